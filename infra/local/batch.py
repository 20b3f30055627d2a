"""`make batch FILE=prompts.jsonl`: drop a prompts file into the local S3 of a running `make run` and wait
for its output, as a user would with `aws s3 cp` against the deployed stack."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from infra.local.run import BATCH_BUCKET


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make batch", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a .jsonl or .csv prompts file")
    parser.add_argument("--endpoint", default="http://127.0.0.1:5001", help="the local S3 of `make run`")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--output-dir", type=Path, default=Path(".newsgen/batch"))
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"FILE={args.file}: no such file")
    if args.file.suffix not in (".jsonl", ".csv"):
        parser.error(f"FILE={args.file}: expected a .jsonl or .csv file")

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError, EndpointConnectionError

    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="local",
                      aws_secret_access_key="local", config=Config(retries={"max_attempts": 1}))
    key = f"batch/in/{args.file.name}"
    job = args.file.stem
    try:
        s3.delete_object(Bucket=BATCH_BUCKET, Key=f"batch/out/{job}.summary.json")
        s3.upload_file(str(args.file), BATCH_BUCKET, key)
    except (EndpointConnectionError, ClientError) as exc:
        sys.exit(f"error: cannot reach the local S3 at {args.endpoint} ({exc}); start `make run` first")
    print(f"uploaded s3://{BATCH_BUCKET}/{key}; waiting for batch/out/{job}.summary.json …", flush=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            summary = json.loads(s3.get_object(Bucket=BATCH_BUCKET, Key=f"batch/out/{job}.summary.json")["Body"].read())
            break
        except s3.exceptions.NoSuchKey:
            time.sleep(1)
    else:
        sys.exit(f"error: no summary after {args.timeout:.0f}s; see the `make run` output")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    local = args.output_dir / f"{job}.jsonl"
    s3.download_file(BATCH_BUCKET, f"batch/out/{job}.jsonl", str(local))
    print(json.dumps(summary, indent=2))
    print(f"output: {local}")


if __name__ == "__main__":
    main()
