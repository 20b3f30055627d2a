"""`make run`: the whole service on this machine, offline.

Starts a moto S3 server on 127.0.0.1, trains the demo headline and article models the first time (from the
project's own synthetic corpus, or from DATA=some.csv), publishes them to the local S3 through the real
publish step, and serves the API handler on http://127.0.0.1:3000. Ctrl-C (or SIGTERM) stops everything it
started. A second start reuses the trained models (the local S3 is in memory, so they are published again).

The console shows one line per request (method, path, status, milliseconds); the Lambda log stream (the
handlers' JSON logs and metrics) and Python's warnings go to <workdir>/run.log, or to the console with
--verbose (`make run VERBOSE=1`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TextIO

from infra.local import harness

DEFAULT_WORKDIR = harness.STATE_DIR / "demo"
# Validation perplexity under which the demo models' text reads as sentences: about as unsure as a choice among
# 30 tokens per step. The demo corpus gets ~1.4 for articles and ~8 for headlines; the 240-row All-the-News
# sample ~1,000.
FLUENT_PERPLEXITY = 30.0
# What `make run` passes for each option; the messages name these.
MAKE_VARIABLES = {"port": "PORT", "s3_port": "S3_PORT"}


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def port_in_use(host: str, port: int, option: str) -> SystemExit:
    """The one line a port already taken ends with (exit 2)."""
    variable = MAKE_VARIABLES[option]
    what = "the API" if option == "port" else "the local S3"
    print(
        f"error: port {port} on {host} ({what}) is already in use — another `make run`? Stop it, or choose "
        f"another port: make run {variable}={port + 1}",
        file=sys.stderr,
    )
    return SystemExit(2)


def source_key(data: Path | None) -> str:
    """Where the models trained on this data live: a changed demo corpus or CSV gets models of its own."""
    if data is None:
        from training.demo_corpus import fingerprint

        return f"demo-corpus-{fingerprint()[:12]}"
    return "csv-" + hashlib.sha256(data.read_bytes()).hexdigest()[:16]


def ensure_models(workdir: Path, data: Path | None, progress: bool = True) -> dict[str, Path]:
    """The models to serve: the shipped demo models, or models trained here on DATA (or on the demo corpus, when
    the shipped ones were trained for another corpus or prompt format), reused by a later start."""
    from infra.local import demo_models

    if data is None and (shipped := demo_models.shipped_models()):
        print(f"demo models: shipped in {shown(demo_models.SHIPPED)} (make demo-models trains them again)", flush=True)
        return shipped
    if data is None:
        print("the shipped demo models were trained for another corpus or prompt format: training new ones", flush=True)
    directory = workdir / source_key(data)
    models = {task: directory / task for task in demo_models.TASKS}
    if all((path / "model.safetensors").is_file() for path in models.values()):
        print(f"reusing the models trained in {shown(directory)}", flush=True)
        return models
    return demo_models.train_models(directory, data, progress=progress)


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory where it can be."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def publish(models: dict[str, Path]) -> dict[str, str]:
    import boto3

    from newsgen.artifacts import INT8_WEIGHTS
    from training.publish import publish_model

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=harness.MODEL_BUCKET)
    versions = {}
    for task, path in models.items():
        report = json.loads((path / "training_report.json").read_text())
        version = f"demo-{(report.get('data_fingerprint') or 'local')[:12]}"
        export = "int8" if (path / INT8_WEIGHTS).is_file() else "fp32"
        publish_model(
            path,
            bucket=harness.MODEL_BUCKET,
            prefix=harness.MODEL_PREFIX,
            task=task,
            version=version,
            export=export,
            progress=False,
        )
        versions[task] = version
    return versions


def start_batch(endpoint: str):
    """The batch bucket, the chunk queue with its DLQ, and the local S3/SQS triggers for the batch functions."""
    import boto3

    from infra.local.triggers import Pollers, S3Trigger, SqsTrigger, create_queues

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket=harness.BATCH_BUCKET)
    queue_url, dlq_url = create_queues(sqs, harness.BATCH_QUEUE, max_receive_count=3, visibility_timeout=60)
    os.environ.update(BATCH_QUEUE_URL=queue_url, RESULTS_BUCKET=harness.BATCH_BUCKET)
    from handlers import batch as handlers  # reads its settings at import, as in Lambda

    return Pollers(
        S3Trigger(s3, harness.BATCH_BUCKET, handlers.dispatch_handler),
        SqsTrigger(sqs, queue_url, handlers.worker_handler),
        SqsTrigger(sqs, dlq_url, handlers.dead_letter_handler, batch_size=10, function="batch-dead-letters"),
    ).start()


class QuietConsole(io.TextIOBase):
    """stdout of a quiet `make run`: JSON lines (the Lambda log stream: powertools' logs and EMF metrics) go
    to the log file, everything else to the terminal. Lines are assembled per thread, since print() writes
    the text and its newline separately and requests are served on many threads."""

    def __init__(self, terminal: TextIO, log: TextIO):
        self.terminal, self.log = terminal, log
        self._lock = threading.Lock()
        self._pending = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        buffered = getattr(self._pending, "text", "") + text
        *lines, self._pending.text = buffered.split("\n")
        if lines:
            with self._lock:
                for line in lines:
                    (self.log if line.lstrip().startswith("{") else self.terminal).write(line + "\n")
                self.flush()
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        self.log.flush()


def quiet_console(log_path: Path) -> TextIO:
    """Route the Lambda log stream and Python's warnings to `log_path`; returns the log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # open for the process's life
    sys.stdout = QuietConsole(sys.stdout, log)

    def to_log(message, category, filename, lineno, file=None, line=None):
        log.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_log
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its advice on generation flags, not ours to act on
    return log


def training_cli_help(endpoint: str, models: dict[str, Path], versions: dict[str, str]) -> str:
    """How to use the training CLI against this local S3: the environment and commands to paste."""

    env = {
        "AWS_ENDPOINT_URL": endpoint,
        **harness.CREDENTIALS,
        "MODEL_BUCKET": harness.MODEL_BUCKET,
        "MODEL_PREFIX": harness.MODEL_PREFIX,
    }
    python = shlex.quote(sys.executable if not Path(".venv/bin/python").is_file() else ".venv/bin/python")
    target = f"--bucket {harness.MODEL_BUCKET} --prefix {harness.MODEL_PREFIX} --task headline"
    export = "" if (models["headline"] / "model.safetensors").is_file() else " --export int8"  # the shipped models
    return (
        "the training CLI against this S3 (in another shell; its credentials are dummies, nothing goes to AWS):\n"
        f"  export {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())}\n"
        f"  {python} -m training versions --task headline\n"
        f"  {python} -m training publish --model {shlex.quote(shown(models['headline']))} {target}{export} --version my-v2\n"
        f"  {python} -m training set-latest {target} --version {versions['headline']}    (roll back)\n"
        f"  LATEST is re-read every {harness.LOCAL_SETTINGS['LATEST_TTL_SECONDS']} s here: a publish shows in "
        "/v1/models at once.\n"
    )


def quality_note(models: dict[str, Path], data: Path | None) -> str:
    """What to expect of the demo models, from their training reports."""
    reports = {task: json.loads((path / "training_report.json").read_text()) for task, path in models.items()}
    config = json.loads((models["article"] / "config.json").read_text())
    perplexities = ", ".join(f"{task} {r['val_perplexity']:,.2f}" for task, r in reports.items())
    source = "the synthetic demo corpus (sentences from templates)" if data is None else data.name
    if max(r["val_perplexity"] for r in reports.values()) < FLUENT_PERPLEXITY:
        expect = "they recombine its phrases into plausible-looking, invented news"
    else:
        expect = "they write word salad in the style of news, not readable text"
    note = (
        f"models: {config['n_layer']}-layer, {config['n_embd']}-wide GPT-2s trained from scratch on {source}; "
        f"validation perplexity {perplexities}: {expect}. It is all fake news.\n"
    )
    for report in reports.values() if data is not None else ():  # the demo corpus' size is no news
        if report.get("data_warning"):
            note += f"warning: {report['data_warning']}\n"
    return note


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    # First of all: Ctrl-C or SIGTERM (from `kill`, or make's parent) at any point, also while starting, ends in
    # the clean-up below. Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        serve_until_stopped(argv)
    except KeyboardInterrupt:  # before anything was started
        pass
    except SystemExit as exc:  # a usage error or a port in use, already said
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    # Everything it started is stopped by now. Skip the interpreter's finalisation: a daemon thread still inside
    # torch (the init-phase preload, a request being answered) makes it abort there, now and then, with
    # "terminate called without an active exception" and SIGABRT instead of a clean exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve_until_stopped(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="make run", description="newsgen on this machine: local S3 + local API")
    parser.add_argument("--data", type=Path, default=None, help="an All-the-News CSV (default: the demo corpus)")
    parser.add_argument("--host", default=harness.HOST)
    parser.add_argument("--port", type=int, default=harness.API_PORT, help="0: a free one")
    parser.add_argument("--s3-port", type=int, default=harness.S3_PORT, help="0: a free one")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--watermark-keys", type=Path, default=harness.WATERMARK_KEYS, help="made on first use")
    parser.add_argument(
        "--state-file", type=Path, default=harness.RUN_STATE, help="where make batch finds this run's endpoints"
    )
    parser.add_argument("--verbose", action="store_true", help="the handlers' JSON logs and warnings on the console")
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_file():
        parser.error(f"DATA={args.data}: no such file")
    for option in ("port", "s3_port"):
        port = getattr(args, option)
        if port and not port_free(args.host, port):
            raise port_in_use(args.host, port, option)
    log_path = args.workdir / "run.log"
    if not args.verbose:
        quiet_console(log_path)

    started = time.perf_counter()
    try:
        s3_server, endpoint = harness.start_s3(args.s3_port, args.host)
    except OSError as exc:  # taken between the check and the bind
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use(args.host, args.s3_port, "s3_port") from None
        raise
    api_server = pollers = None
    try:
        print(f"local S3 on {endpoint}", flush=True)
        models = ensure_models(args.workdir, args.data)
        versions = publish(models)
        print(f"published to s3://{harness.MODEL_BUCKET}/{harness.MODEL_PREFIX}/: {versions}", flush=True)
        os.environ.update(
            harness.function_env(
                "api",
                endpoint,
                cache_dir=(args.workdir / "cache").resolve(),
                watermark_keys_file=args.watermark_keys.resolve(),
            ),
            POWERTOOLS_SERVICE_NAME="newsgen-local",
        )
        from infra.local.server import serve

        try:
            api_server = serve(args.host, args.port)  # imports the handler, which loads both models (init phase)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use(args.host, args.port, "port") from None
            raise
        pollers = start_batch(endpoint)
        url = f"http://{args.host}:{api_server.server_address[1]}"
        harness.RunState(pid=os.getpid(), api=url, s3=endpoint).write(args.state_file)
        print(
            f"\nnewsgen is up in {time.perf_counter() - started:.0f}s: {url}  (Ctrl-C stops it)\n"
            f"  playground (in a browser): {url}/\n"
            f"  curl -s -XPOST {url}/v1/headlines -d '{{\"n\":2}}'\n"
            f'  curl -s -XPOST {url}/v1/articles -d \'{{"headline":"City council approves a new harbor ferry line after a long debate"}}\'\n'
            f"  curl -s -XPOST {url}/v1/news -d '{{\"n\":2}}'\n"
            f'  curl -s -XPOST {url}/v1/detect -d \'{{"text":"…a generated article…"}}\'    (is it watermarked?)\n'
            f"  curl -s {url}/v1/models    ·    spec: {url}/openapi.json    ·    docs: {url}/docs\n"
            f"  make batch FILE=prompts.jsonl    (drops it into s3://{harness.BATCH_BUCKET}/batch/in/)\n"
            + quality_note(models, args.data)
            + training_cli_help(endpoint, models, versions)
            + ("" if args.verbose else f"logs: {log_path} (JSON lines; make run VERBOSE=1 shows them here)\n"),
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    except Exception as exc:
        from training.prepare import PrepareError
        from training.train import TrainError

        if not isinstance(exc, (TrainError, PrepareError)):  # a problem with DATA: said in one line
            raise
        print(f"error: {getattr(exc, 'message', None) or exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave a server behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        harness.RunState.remove(os.getpid(), args.state_file)
        if pollers is not None:
            pollers.stop()
        if api_server is not None:
            api_server.shutdown()
            api_server.server_close()
        s3_server.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
