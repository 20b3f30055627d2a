"""The one local imitation of Lambda and its event sources, for everything that runs the handlers here.

It owns the local names (ports, buckets, queue, fake credentials), the Lambda sizing and entry point of each
function (read from template.yaml, never restated), the events API Gateway, S3 and SQS send, and the context
Lambda passes. The local server, the S3/SQS triggers, the RIE runner, `make sam-local`, the benchmarks and the
tests all import it.

    python -m infra.local.harness event api-headlines     # print a named event (make invoke EVENT=...)
    python -m infra.local.harness functions               # the functions as the template declares them
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

HOST = "127.0.0.1"
API_PORT = 3000
S3_PORT = 5001
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
# Nothing local talks to AWS; boto3 only needs some credentials to sign with.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}

MODEL_BUCKET = "newsgen-models"
MODEL_PREFIX = "models"
BATCH_BUCKET = "newsgen-batch"
BATCH_QUEUE = "newsgen-batch-chunks"

STATE_DIR = ROOT / ".newsgen"
WATERMARK_KEYS = STATE_DIR / "watermark-keys.json"  # made on first use; keep it to detect older texts
# Where a running `make run` says where it listens (PORT=, S3_PORT= and port 0 move it): `make batch` and
# `make redrive` follow it. Written once it is up, removed when it stops.
RUN_STATE = STATE_DIR / "run.json"
# What every local function sees besides the template's variables: no X-Ray daemon, no model hub, and LATEST
# re-read every 2 s instead of every 300 s, so that a version published from the training CLI shows at once.
LOCAL_SETTINGS = {
    "POWERTOOLS_METRICS_NAMESPACE": "newsgen-local",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "LATEST_TTL_SECONDS": "2",
}


def endpoint(port: int = S3_PORT, host: str = HOST) -> str:
    return f"http://{host}:{port}"


class RunState(BaseModel):
    """What a running `make run` tells the other local commands: its process and its endpoints."""

    pid: int
    api: str
    s3: str

    def write(self, path: Path = RUN_STATE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{self.pid}")
        partial.write_text(self.model_dump_json(indent=2) + "\n")
        partial.replace(path)  # a reader never sees half a file

    @classmethod
    def read(cls, path: Path = RUN_STATE) -> RunState | None:
        """The running `make run`'s state; None when none is up (no file, or one left by a process that was
        killed before it could remove it)."""
        try:
            state = cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None
        return state if _alive(state.pid) else None

    @classmethod
    def remove(cls, pid: int, path: Path = RUN_STATE) -> None:
        """Remove the state file if process `pid` wrote it (a second `make run` may have replaced it)."""
        try:
            if cls.model_validate_json(path.read_bytes()).pid == pid:
                path.unlink()
        except (OSError, ValidationError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def start_s3(port: int = 0, host: str = HOST) -> tuple[Any, str]:
    """A moto S3/SQS server on a background thread (port 0: a free one); points this process's boto3 at it,
    with the fake credentials. Returns (server, endpoint); server.stop() stops it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 request buries everything else
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    url = endpoint(server._server.server_port, host)
    os.environ.update(AWS_ENDPOINT_URL=url, **CREDENTIALS)
    return server, url


@dataclass(frozen=True)
class Clients:
    s3: Any
    sqs: Any


def clients(s3_endpoint: str | None = None, config: Any = None) -> Clients:
    """boto3 S3 and SQS clients for the local S3/SQS at `s3_endpoint` (with the fake credentials), or for AWS
    (the environment's credentials) when it is None."""
    import boto3

    local = {}
    if s3_endpoint:
        local = {
            "endpoint_url": s3_endpoint,
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
    options = {"region_name": REGION, "config": config, **local}
    return Clients(boto3.client("s3", **options), boto3.client("sqs", **options))


# --- the functions, as template.yaml declares them -------------------------------------------------------
LOGICAL_IDS = {
    "api": "ApiFunction",
    "batch-dispatch": "BatchDispatchFunction",
    "batch-worker": "BatchWorkerFunction",
    "batch-dead-letters": "BatchDeadLetterRecorderFunction",
}


@dataclass(frozen=True)
class Function:
    name: str  # api, batch-dispatch, ...
    logical_id: str
    handler: str  # module.function, as awslambdaric takes it
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]  # the template's literal variables (Globals, then the function's own)


def load_template(path: Path = TEMPLATE) -> dict:
    """template.yaml, with CloudFormation's short tags (!Ref, !Sub, …) read as their long forms."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader, tag: str, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        name = tag.lstrip("!")
        if name == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {name if name in ("Ref", "Condition") else f"Fn::{name}": value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(path.read_text(), Loader=Loader)


@functools.cache
def functions() -> dict[str, Function]:
    template = load_template()
    defaults = {name: p.get("Default") for name, p in template.get("Parameters", {}).items()}
    globals_ = template.get("Globals", {}).get("Function", {})

    def number(value) -> int:
        return int(defaults[value["Ref"]] if isinstance(value, dict) else value)

    def literals(props: dict) -> dict[str, str]:
        variables = props.get("Environment", {}).get("Variables", {})
        return {k: str(v) for k, v in variables.items() if not isinstance(v, dict)}

    found = {}
    for name, logical_id in LOGICAL_IDS.items():
        props = {**globals_, **template["Resources"][logical_id]["Properties"]}
        if props.get("PackageType") == "Image":
            handler = props["ImageConfig"]["Command"][0]
        else:  # a Zip function: CodeUri is the package, Handler module.function inside it
            handler = f"{props['CodeUri'].strip('/').replace('/', '.')}.{props['Handler']}"
        found[name] = Function(
            name=name,
            logical_id=logical_id,
            handler=handler,
            memory_mb=number(props.get("MemorySize", 128)),
            timeout_s=number(props.get("Timeout", 3)),
            environment={**literals(globals_), **literals(props)},
        )
    return found


def function_env(
    name: str,
    s3_endpoint: str,
    *,
    cache_dir: Path,
    model_bucket: str = MODEL_BUCKET,
    model_prefix: str = MODEL_PREFIX,
    watermark_keys_file: Path = WATERMARK_KEYS,
    queue_url: str | None = None,
    results_bucket: str | None = None,
) -> dict[str, str]:
    """The environment of function `name` talking to a local S3/SQS (moto) at `s3_endpoint`."""
    env = {
        **functions()[name].environment,
        **LOCAL_SETTINGS,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "MODEL_BUCKET": model_bucket,
        "MODEL_PREFIX": model_prefix,
        "MODEL_CACHE_DIR": str(cache_dir),
        "WATERMARK_KEYS_FILE": str(watermark_keys_file),
    }
    # The template gives these as references to its resources; here they are the local queue and bucket.
    if queue_url:
        env["BATCH_QUEUE_URL"] = queue_url
    if results_bucket:
        env["RESULTS_BUCKET"] = results_bucket
    return env


# --- what Lambda passes a handler ---------------------------------------------------------------------
@dataclass
class LambdaContext:
    """The parts of the Lambda context object the handlers use; the deadline runs from its creation."""

    function_name: str = "newsgen-local"
    memory_limit_in_mb: int = 2048
    timeout_s: float = 28.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    @classmethod
    def of(cls, name: str, **overrides) -> LambdaContext:
        spec = functions()[name]
        return cls(
            **{
                "function_name": f"newsgen-{name}",
                "memory_limit_in_mb": spec.memory_mb,
                "timeout_s": spec.timeout_s,
                **overrides,
            }
        )

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# --- events ---------------------------------------------------------------------------------------------
PROXY_RESOURCE = "/{proxy+}"


def api_event(
    method: str,
    path: str,
    body: object = None,
    *,
    raw: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    stage: str = "local",
) -> dict:
    """An API Gateway REST proxy event, as API Gateway sends it. `body` is sent as JSON; `raw` as it is
    (bytes that are not UTF-8 go base64-encoded, as API Gateway passes binary bodies)."""
    url = urlsplit(path)
    query = parse_qs(url.query, keep_blank_values=True)
    if headers is None:  # what a JSON client sends; a server passes the request's own headers
        headers = {"Content-Type": "application/json"}
    text, is_base64 = (None if body is None else json.dumps(body)), False
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8") if raw else None
        except UnicodeDecodeError:
            text, is_base64 = base64.b64encode(raw).decode(), True
    elif raw is not None:
        text = raw
    return {
        "resource": PROXY_RESOURCE,  # the template's one proxy route
        "path": url.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": url.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": PROXY_RESOURCE,
            "httpMethod": method,
            "path": f"/{stage}{url.path}",
            "stage": stage,
            "requestId": request_id or str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": HOST, "userAgent": headers.get("User-Agent", "")},
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "protocol": "HTTP/1.1",
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def s3_event(bucket: str, key: str, size: int, etag: str, sequencer: str | None = None) -> dict:
    """An S3 ObjectCreated notification for one object."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "local"},
                "requestParameters": {"sourceIPAddress": HOST},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex, "x-amz-id-2": uuid.uuid4().hex},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "batch-in",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "local"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": key,
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": sequencer or f"{time.time_ns():X}",
                    },
                },
            }
        ]
    }


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """An SQS event for messages as `receive_message` returns them."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


# --- named example events (make invoke EVENT=<name>) ------------------------------------------------------
# The upload the example batch events describe; `make invoke FUNCTION=batch-*` puts it there first.
EXAMPLE_KEY = "batch/in/prompts.jsonl"
EXAMPLE_INPUT = (
    b'{"id": "h1", "task": "headline", "prompt": "City council", "parameters": {"seed": 1, "max_new_tokens": 12}}\n'
    b'{"id": "a1", "task": "article", "headline": "City council approves a new harbor ferry line", '
    b'"parameters": {"seed": 2, "max_new_tokens": 40}}\n'
)
EXAMPLE_SEQUENCER = "0065A1B2C3D4E5F600"


def example_upload_event(bucket: str = BATCH_BUCKET) -> dict:
    """The S3 event of EXAMPLE_INPUT's upload (its size and MD5 ETag, as S3 reports a single-part upload)."""
    return s3_event(bucket, EXAMPLE_KEY, len(EXAMPLE_INPUT), hashlib.md5(EXAMPLE_INPUT).hexdigest(), EXAMPLE_SEQUENCER)


def example_chunk_event(bucket: str = BATCH_BUCKET) -> dict:
    """The SQS event of the chunk message the dispatcher sends for EXAMPLE_INPUT."""
    from aws_lambda_powertools.utilities.data_classes import S3Event

    from handlers.batch import upload_of
    from newsgen import batch
    from newsgen.batch.jobs import plan

    upload = upload_of(next(S3Event(example_upload_event(bucket)).records))
    columns, ranges = plan(iter([EXAMPLE_INPUT]), "jsonl", chunk_lines=50, chunk_tokens=16384)
    messages = [
        batch.ChunkMessage(
            bucket=bucket,
            job=upload.job,
            input_key=upload.key,
            etag=upload.etag,
            format="jsonl",
            columns=columns,
            chunk=i,
            chunks=len(ranges),
            **r,
        )
        for i, r in enumerate(ranges)
    ]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{BATCH_QUEUE}"
    received = [
        {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": m.model_dump_json()}
        for m in messages
    ]
    return sqs_event(received, queue_arn)


EVENTS: dict[str, Callable[[], dict]] = {
    "api-headlines": lambda: api_event(
        "POST", "/v1/headlines", {"prompt": "City council", "n": 2, "parameters": {"seed": 42}}
    ),
    "api-articles": lambda: api_event(
        "POST", "/v1/articles", {"headline": "City council approves a new harbor ferry line after a long debate"}
    ),
    "api-news": lambda: api_event("POST", "/v1/news", {"n": 2}),
    "api-models": lambda: api_event("GET", "/v1/models"),
    "api-health": lambda: api_event("GET", "/health"),
    "s3-batch-in": example_upload_event,
    "sqs-batch-chunk": example_chunk_event,
}


# The function each named event is for (`make invoke EVENT=<name>` needs no FUNCTION=).
EVENT_FUNCTIONS = {
    **{name: "api" for name in EVENTS if name.startswith("api-")},
    "s3-batch-in": "batch-dispatch",
    "sqs-batch-chunk": "batch-worker",
}


def event(name_or_path: str) -> dict:
    """A named example event, or the JSON event in a file."""
    if name_or_path in EVENTS:
        return EVENTS[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        named = f"the named events are {', '.join(EVENTS)}"
        if path.stem in EVENTS:  # an old events/<name>.json path: the bundled events became named ones
            raise ValueError(f"EVENT={name_or_path}: no such file; use EVENT={path.stem} ({named})")
        raise ValueError(f"EVENT={name_or_path}: no such file, and not a named event; {named}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"EVENT={name_or_path}: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.local.harness", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("event", help="print a named example event").add_argument("name", choices=sorted(EVENTS))
    commands.add_parser("functions", help="the functions as template.yaml declares them")
    args = parser.parse_args(argv)
    if args.command == "event":
        json.dump(EVENTS[args.name](), sys.stdout, indent=2)
    else:
        json.dump({name: vars(f) for name, f in functions().items()}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
