"""The handlers under the AWS Lambda Runtime Interface Emulator (RIE) + awslambdaric, without Docker.

This is the path Lambda itself takes: the RIE (the `aws-lambda-rie` binary shipped in the aws-sam-cli wheel,
installed in .venv-sam by `make .venv-sam/.installed`) serves the Lambda invoke API and the Runtime API,
starts `python -m awslambdaric <handler>` as the runtime on the first invoke (the init phase, with
PRELOAD_MODELS=true as in template.yaml), and passes every event through the Runtime API to the handler,
with a real Lambda context (request id, deadline from AWS_LAMBDA_FUNCTION_TIMEOUT, memory size).

    with emulated_function("handlers.api.lambda_handler", env) as invoke:
        response = invoke(event)            # what Lambda would return to API Gateway

`make invoke EVENT=api-headlines [FUNCTION=api|batch-dispatch|batch-worker|batch-dead-letters]` runs the CLI
below against the local S3 of a running `make run` (the harness's names: models in s3://newsgen-models/models/,
batch files in s3://newsgen-batch/, chunk queue newsgen-batch-chunks). EVENT is one of the harness's named
events (each names its function, so FUNCTION may be left out) or a JSON file (FUNCTION needed). Batch events
are passed verbatim, so the objects they name must exist there as the events describe them: the dispatcher
reads an upload only while its ETag is the event's, and a chunk message is a byte range of that upload; an
event naming an object the local S3 lacks (a deployed bucket, say) is refused in one line before anything
starts. The named events s3-batch-in and sqs-batch-chunk describe harness.EXAMPLE_INPUT, which is put there
before invoking them. Note that `make run`'s own S3/SQS pollers also act on new batch/in/ objects (as a
separate upload: another job, same output) and on the chunk queue.

Everything listens on 127.0.0.1 only; the emulator and the runtime are stopped by PID on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from infra.local import harness
from infra.local.harness import HOST, ROOT

SAM_VENV = ROOT / ".venv-sam"
SAM_TARGET = ".venv-sam/.installed"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


class RieError(RuntimeError):
    """The emulator is missing, did not start, or did not answer."""


def find_rie(sam_venv: Path = SAM_VENV) -> Path:
    """The aws-lambda-rie binary of the aws-sam-cli wheel in .venv-sam (or $AWS_LAMBDA_RIE)."""
    if os.environ.get("AWS_LAMBDA_RIE"):
        path = Path(os.environ["AWS_LAMBDA_RIE"])
        if not path.is_file():
            raise RieError(f"AWS_LAMBDA_RIE={path}: no such file")
        return path
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if arch is None:
        raise RieError(f"no Lambda Runtime Interface Emulator for {platform.machine()}")
    found = sorted(sam_venv.glob(f"lib/python3.*/site-packages/samcli/local/rapid/aws-lambda-rie-{arch}"))
    if not found:
        raise RieError(
            f"the Lambda Runtime Interface Emulator is not installed ({sam_venv}/lib/python3.*/site-packages/"
            f"samcli/local/rapid/aws-lambda-rie-{arch} is missing): run `make {SAM_TARGET}` (the SAM CLI in its own venv)"
        )
    return found[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Child processes, recursively (Linux /proc); the RIE starts the runtime in its own process group."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the RIE (it SIGKILLs its runtime), then SIGKILL whatever of them is left, each by its PID."""
    pids = [process.pid, *_descendants(process.pid)]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    deadline = time.monotonic() + 5
    for pid in pids[1:]:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Invoker:
    """`invoke(event) -> dict`: one synchronous invocation through the emulator's Lambda invoke API.

    A function that fails (the handler raises, the init fails, the runtime dies or times out) answers
    {"errorMessage", "errorType", ...}, as Lambda's Invoke API does."""

    def __init__(self, url: str, process: subprocess.Popen, log_path: Path | None, timeout_s: float):
        self.url, self.process, self.log_path, self.timeout_s = url, process, log_path, timeout_s
        self.durations: list[float] = []  # seconds per invocation, the first one cold

    def pids(self) -> list[int]:
        """The emulator's PID and its runtime's (once the first invoke started it)."""
        return [self.process.pid, *_descendants(self.process.pid)]

    def __call__(self, event: dict, timeout_s: float | None = None) -> dict:
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:  # 502 when the runtime failed (init error, crash, timeout)
            raw = exc.read()
            with contextlib.suppress(ValueError):
                answer = json.loads(raw)
                if isinstance(answer, dict) and "errorType" in answer:
                    return answer  # the function error, as Lambda's Invoke API returns it
            raise RieError(f"the emulator answered HTTP {exc.code}: {raw[:2000]!r}{self._tail()}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise RieError(f"no answer from the emulator at {self.url}: {exc}{self._tail()}") from exc
        finally:
            self.durations.append(time.perf_counter() - started)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RieError(f"the function answered no JSON: {raw[:2000]!r}{self._tail()}") from exc

    def logs(self) -> str:
        """What the emulator and the function wrote so far (when logging to a file)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def _tail(self, chars: int = 6000) -> str:
        text = self.logs()
        return f"\n--- emulator/function log (last {chars} chars) ---\n{text[-chars:]}" if text else ""


@contextlib.contextmanager
def emulated_function(
    function: str | harness.Function,
    env: dict[str, str],
    port: int | None = None,
    *,
    python: str | None = None,
    timeout_s: int | None = None,
    log: IO | Path | None = None,
    startup_timeout_s: float = 30.0,
) -> Iterator[Invoker]:
    """Run a function of template.yaml (its name, e.g. "api") or any `harness.Function` under the RIE +
    awslambdaric, with its memory size and timeout (or `timeout_s`); yields `invoke(event) -> dict`.

    The function sees only `env` plus what Lambda sets (no host AWS_* or other settings leak in), with the
    repository as its task root (cwd and PYTHONPATH). `log`: a file object or path for the emulator's and the
    function's output (START/END/REPORT lines, the handler's logs); default a temporary file, read with
    `invoke.logs()`. The emulator (and the runtime it starts) are stopped on exit, on errors too.
    """
    spec = harness.functions()[function] if isinstance(function, str) else function
    timeout_s = timeout_s or spec.timeout_s
    rie = find_rie()
    python = python or sys.executable
    if python == sys.executable and importlib.util.find_spec("awslambdaric") is None:
        raise RieError(f"awslambdaric is not installed in {sys.executable}: pip install awslambdaric (the dev extra)")
    port = port or free_port()
    api_port = free_port()
    while api_port == port:
        api_port = free_port()
    pythonpath = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "newsgen")])
    child_env = {
        # What the host must lend for the process to start at all; nothing else of the host's environment.
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ},
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "PYTHONPATH": pythonpath,
        "PYTHONUNBUFFERED": "1",
        "AWS_LAMBDA_FUNCTION_NAME": f"newsgen-{spec.name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
        **{k: str(v) for k, v in env.items()},
    }
    if "AWS_DEFAULT_REGION" in child_env:
        child_env.setdefault("AWS_REGION", child_env["AWS_DEFAULT_REGION"])
    command = [
        str(rie),
        "--runtime-interface-emulator-address",
        f"{HOST}:{port}",
        "--runtime-api-address",
        f"{HOST}:{api_port}",
        python,
        "-m",
        "awslambdaric",
        spec.handler,
    ]
    with contextlib.ExitStack() as stack:
        log_path = None
        if log is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="newsgen-rie-"))
            log_path = Path(tmp) / "function.log"
            log = log_path
        if isinstance(log, Path):
            log_path = log
            log = stack.enter_context(open(log, "ab"))
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop, process)
        invoker = Invoker(f"http://{HOST}:{port}{INVOKE_PATH}", process, log_path, timeout_s=timeout_s + 60)
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RieError(f"the emulator exited with {process.returncode} before listening{invoker._tail()}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((HOST, port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RieError(
                    f"the emulator did not listen on {HOST}:{port} within {startup_timeout_s:.0f}s{invoker._tail()}"
                )
            time.sleep(0.05)
        yield invoker


def objects_named(event: dict) -> list[tuple[str, str]]:
    """The (bucket, key) pairs a batch event makes its function read: an S3 notification's objects, a chunk
    message's upload. Nothing for other events."""
    named = []
    for record in event.get("Records", []) if isinstance(event, dict) else []:
        if not isinstance(record, dict):
            continue
        if record.get("eventSource") == "aws:s3":
            s3 = record.get("s3", {})
            named.append((s3.get("bucket", {}).get("name", ""), s3.get("object", {}).get("key", "")))
        elif record.get("eventSource") == "aws:sqs":
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                body = json.loads(record.get("body") or "")
                named.append((body["bucket"], body["input_key"]))
    return [(bucket, key) for bucket, key in named if bucket and key]


def missing_objects(s3, event: dict) -> list[str]:
    """s3:// URIs of the objects the event names that the local S3 does not have."""
    from botocore.exceptions import ClientError

    missing = []
    for bucket, key in objects_named(event):
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NoSuchBucket"):
                raise
            missing.append(f"s3://{bucket}/{key}")
    return missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__.splitlines()[0])
    parser.add_argument("--event", required=True, help=f"a JSON event file or one of {', '.join(harness.EVENTS)}")
    parser.add_argument(
        "--function", choices=sorted(harness.LOGICAL_IDS), default=None, help="default: the named event's"
    )
    parser.add_argument("--endpoint", default=harness.endpoint(), help="the local S3/SQS of `make run`")
    parser.add_argument("--model-bucket", default=harness.MODEL_BUCKET)
    parser.add_argument("--model-prefix", default=harness.MODEL_PREFIX)
    parser.add_argument("--queue-url", default=None, help=f"BATCH_QUEUE_URL (default: {harness.BATCH_QUEUE}'s)")
    parser.add_argument(
        "--results-bucket", default=harness.BATCH_BUCKET, help="RESULTS_BUCKET of the dead-letter recorder"
    )
    parser.add_argument(
        "--put-example-input",
        action="store_true",
        help=f"first put the upload the example batch events describe (s3://{harness.BATCH_BUCKET}/{harness.EXAMPLE_KEY})",
    )
    parser.add_argument("--cache-dir", type=Path, default=harness.STATE_DIR / "rie" / "cache")
    parser.add_argument("--port", type=int, default=None, help="the emulator's port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--timeout", type=int, default=None, help="AWS_LAMBDA_FUNCTION_TIMEOUT (default: template.yaml's)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not show the emulator's and function's log on stderr")
    args = parser.parse_args(argv)
    try:
        event = harness.event(args.event)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    for_function = harness.EVENT_FUNCTIONS.get(args.event)
    if args.function is None and for_function is None:
        sys.exit(
            f"error: EVENT={args.event} is a file: say which function it is for, FUNCTION=<{'|'.join(harness.LOGICAL_IDS)}>"
        )
    if args.function and for_function and args.function != for_function:
        sys.exit(f"error: EVENT={args.event} is an event for FUNCTION={for_function}, not {args.function}")
    args.function = args.function or for_function
    example = args.put_example_input or args.event in ("s3-batch-in", "sqs-batch-chunk")

    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    clients = harness.clients(args.endpoint, Config(retries={"max_attempts": 1}, connect_timeout=3))
    try:
        if args.function == "api":
            clients.s3.head_bucket(Bucket=args.model_bucket)
        if example:
            clients.s3.put_object(Bucket=harness.BATCH_BUCKET, Key=harness.EXAMPLE_KEY, Body=harness.EXAMPLE_INPUT)
        if missing := missing_objects(clients.s3, event):
            sys.exit(
                f"error: EVENT={args.event} names {', '.join(missing)}, which the local S3 at {args.endpoint} does not "
                f"have (a deployed bucket?): use EVENT=s3-batch-in (its upload is put there for you), or put your "
                f"file in s3://{harness.BATCH_BUCKET}/batch/in/ and name that in the event"
            )
        queue_url = args.queue_url
        if args.function == "batch-dispatch" and not queue_url:
            queue_url = clients.sqs.get_queue_url(QueueName=harness.BATCH_QUEUE)["QueueUrl"]
    except (BotoCoreError, ClientError) as exc:
        sys.exit(
            f"error: the local S3/SQS at {args.endpoint} is not ready ({exc}); start `make run` first "
            f"(it serves s3://{args.model_bucket}, s3://{harness.BATCH_BUCKET} and the {harness.BATCH_QUEUE} queue)"
        )
    env = harness.function_env(
        args.function,
        args.endpoint,
        model_bucket=args.model_bucket,
        model_prefix=args.model_prefix,
        cache_dir=args.cache_dir.resolve(),
        queue_url=queue_url,
        results_bucket=args.results_bucket if args.function == "batch-dead-letters" else None,
    )
    log = subprocess.DEVNULL if args.quiet else sys.stderr
    try:
        with emulated_function(args.function, env, args.port, timeout_s=args.timeout, log=log) as invoke:
            response = invoke(event)
    except RieError as exc:
        sys.exit(f"error: {exc}")
    sys.stderr.flush()
    print(json.dumps(response, indent=2, ensure_ascii=False))
    print(
        f"# {args.function}: answered in {invoke.durations[-1]:.2f}s (cold: includes the init phase)",
        file=sys.stderr,
    )
    if isinstance(response, dict) and "errorType" in response and "errorMessage" in response:
        sys.exit(1)


if __name__ == "__main__":
    main()
