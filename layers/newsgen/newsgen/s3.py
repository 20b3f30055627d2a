"""boto3 clients configured once. The endpoint comes from AWS_ENDPOINT_URL when set (boto3 reads it
itself), which is how the local moto server stands in for S3."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

MiB = 1024 * 1024

# Standard retry mode backs off on throttling and 5xx; connect/read timeouts keep a stuck GET from eating the
# Lambda's whole time budget.
CLIENT_CONFIG = Config(
    retries={"max_attempts": int(os.environ.get("NEWSGEN_S3_MAX_ATTEMPTS", "5")), "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=16,
)

# Files below the threshold go in one request; larger ones in parallel parts.
TRANSFER_CONFIG = TransferConfig(multipart_threshold=256 * MiB, multipart_chunksize=64 * MiB, max_concurrency=8)


@functools.cache
def client(endpoint_url: str | None = None):
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=CLIENT_CONFIG)


def reader(bucket: str):
    """What the model store reads from: S3, or a local mirror of the bucket for `file:///path`."""
    if bucket.startswith("file://"):
        return LocalBucket(Path(bucket.removeprefix("file://")))
    return client()


class NoSuchKey(ClientError):
    pass


class LocalBucket:
    """Read-only, over a directory laid out like the bucket (`python -m training mirror`): models baked into
    an image are read, checksummed and loaded by the same code as from S3."""

    class exceptions:  # as on a boto3 client, for the readers that catch client.exceptions.NoSuchKey
        NoSuchKey = NoSuchKey

    def __init__(self, root: Path):
        self.root = Path(root)

    def get_object(self, Bucket: str, Key: str) -> dict:
        path = self.root / Key
        if ".." in Path(Key).parts or not path.is_file():
            raise NoSuchKey({"Error": {"Code": "NoSuchKey", "Message": f"{Key} is not in {self.root}"}}, "GetObject")
        return {"Body": StreamingBody(path.open("rb"), path.stat().st_size), "ContentLength": path.stat().st_size}
