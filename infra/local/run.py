"""`make run`: the whole service on this machine, offline.

Starts a moto S3 server on 127.0.0.1, trains the demo headline and article models the first time (from the
project's own synthetic corpus, or from DATA=some.csv), publishes them to the local S3 through the real
publish step, and serves the API handler on http://127.0.0.1:3000. Ctrl-C stops everything it started.
A second start reuses the trained models (the local S3 is in memory, so they are published again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from infra.local import harness

DEFAULT_WORKDIR = harness.STATE_DIR / "demo"
# Enough steps for the tiny models to learn the prompt format and the corpus' shape on 2 CPU cores.
DEMO_STEPS = {"headline": 400, "article": 300}


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def source_key(data: Path | None) -> str:
    """Where the models trained on this data live: a changed demo corpus or CSV gets models of its own."""
    if data is None:
        from training.demo_corpus import fingerprint

        return f"demo-corpus-{fingerprint()[:12]}"
    return "csv-" + hashlib.sha256(data.read_bytes()).hexdigest()[:16]


def ensure_models(workdir: Path, data: Path | None, steps: dict[str, int]) -> dict[str, Path]:
    """Train the demo models unless this workdir already has them for the same data."""
    from training.cli import main as training

    key = source_key(data)
    models = {task: workdir / key / task for task in steps}
    if all((path / "model.safetensors").is_file() for path in models.values()):
        print(f"reusing demo models in {workdir / key}", flush=True)
        return models
    prepared = workdir / key / "data"
    if not (prepared / "report.json").is_file():
        csv = data
        if csv is None:
            csv = workdir / "demo-corpus.csv"
            training(["demo-data", "--output", str(csv)])
        training(["prepare", "--input", str(csv), "--output", str(prepared)])
    for task, path in models.items():
        if (path / "model.safetensors").is_file():
            continue
        started = time.perf_counter()
        print(f"training the demo {task} model ({steps[task]} steps, CPU)…", flush=True)
        resume = ["--resume"] if any((path / "checkpoints").glob("checkpoint-*")) else []
        training(
            [
                "train",
                "--task",
                task,
                "--data",
                str(prepared),
                "--output",
                str(path),
                "--base",
                "tiny",
                "--max-steps",
                str(steps[task]),
                "--eval-steps",
                "100",
                "--save-steps",
                "100",
                "--batch-size",
                "16" if task == "headline" else "8",
                *resume,
            ]
        )
        print(f"trained {task} in {time.perf_counter() - started:.0f}s", flush=True)
    return models


def publish(models: dict[str, Path]) -> dict[str, str]:
    import boto3

    from training.publish import publish_model

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=harness.MODEL_BUCKET)
    versions = {}
    for task, path in models.items():
        report = json.loads((path / "training_report.json").read_text())
        version = f"demo-{(report.get('data_fingerprint') or 'local')[:12]}"
        publish_model(
            path, bucket=harness.MODEL_BUCKET, prefix=harness.MODEL_PREFIX, task=task, version=version, progress=False
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


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make run", description="newsgen on this machine: local S3 + local API")
    parser.add_argument("--data", type=Path, default=None, help="an All-the-News CSV (default: the demo corpus)")
    parser.add_argument("--host", default=harness.HOST)
    parser.add_argument("--port", type=int, default=harness.API_PORT)
    parser.add_argument("--s3-port", type=int, default=harness.S3_PORT)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_file():
        parser.error(f"DATA={args.data}: no such file")
    for port in (args.port, args.s3_port):
        if not port_free(args.host, port):
            parser.error(f"port {port} on {args.host} is in use; stop what uses it or pass another port")

    started = time.perf_counter()
    s3_server, endpoint = harness.start_s3(args.s3_port, args.host)
    api_server = pollers = None
    # SIGTERM (from `kill`, or make's parent) stops as cleanly as Ctrl-C.
    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"local S3 on {endpoint}", flush=True)
        models = ensure_models(args.workdir, args.data, DEMO_STEPS)
        versions = publish(models)
        print(f"published to s3://{harness.MODEL_BUCKET}/{harness.MODEL_PREFIX}/: {versions}", flush=True)
        os.environ.update(
            harness.function_env("api", endpoint, cache_dir=(args.workdir / "cache").resolve()),
            POWERTOOLS_SERVICE_NAME="newsgen-local",
        )
        from infra.local.server import serve

        api_server = serve(args.host, args.port)  # imports the handler, which loads both models (init phase)
        pollers = start_batch(endpoint)
        url = f"http://{args.host}:{args.port}"
        print(
            f"\nnewsgen is up in {time.perf_counter() - started:.0f}s: {url}  (Ctrl-C stops it)\n"
            f"  curl -s -XPOST {url}/v1/headlines -d '{{\"n\":2}}'\n"
            f'  curl -s -XPOST {url}/v1/articles -d \'{{"headline":"City council approves a new harbor ferry line after a long debate"}}\'\n'
            f"  curl -s -XPOST {url}/v1/news -d '{{\"n\":2}}'\n"
            f'  curl -s -XPOST {url}/v1/detect -d \'{{"text":"…a generated article…"}}\'    (is it watermarked?)\n'
            f"  curl -s {url}/v1/models    ·    spec: {url}/openapi.json    ·    docs: {url}/docs\n"
            f"  make batch FILE=prompts.jsonl    (drops it into s3://{harness.BATCH_BUCKET}/batch/in/)\n",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave a server behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pollers is not None:
            pollers.stop()
        if api_server is not None:
            api_server.shutdown()
            api_server.server_close()
        s3_server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
