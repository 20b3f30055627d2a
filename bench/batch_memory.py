"""`make bench-batch`: peak memory of the batch dispatcher and of assembly for a 100 MB input.

A moto server (its own process) stands in for S3 and SQS. The dispatcher plans a 100 MB JSONL upload
(100,000 lines of ~1 KB) and sends its chunk messages; then every chunk gets a synthetic output of the size a
real one has, and assembly writes the job's results (>100 MB) and summary. Dispatch and assembly each run in
a fresh process, which reports its peak RSS (VmHWM) and its RSS once the code was imported, so the
difference is what the work itself holds. → bench/batch-memory.json
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-batch"
KEY = "batch/in/hundred-megabytes.jsonl"
LINES = 100_000
LINE_BYTES = 1_000


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """VmHWM: this process image's peak RSS (getrusage's ru_maxrss would carry the parent's over exec)."""
    return _status_mb("VmHWM")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu() -> dict:
    import torch

    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return {"model": model, "isa": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count()}


# --- the two measured steps, each run as `python -m bench.batch_memory <step>` in a fresh process ---------
def step_dispatch() -> dict:
    import boto3

    from newsgen import batch

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="bench-chunks")["QueueUrl"]
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    upload = batch.Upload(
        bucket=BUCKET, key=KEY, etag=head["ETag"].strip('"'), sequencer="1", size=head["ContentLength"]
    )
    baseline, started = rss_mb(), time.perf_counter()
    summary = batch.dispatch(
        s3, upload, lambda m: batch.send_chunks(sqs, queue_url, m), chunk_lines=50, chunk_tokens=16384
    )
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "rss_after_imports_mb": round(baseline),
        "peak_rss_mb": round(peak_mb()),
        "lines": summary["lines"],
        "chunks": summary["chunks"],
        "job": upload.job,
    }


def step_assemble(job: str) -> dict:
    import boto3

    from newsgen import batch

    s3 = boto3.client("s3")
    baseline, started = rss_mb(), time.perf_counter()
    summary = batch.assemble_if_complete(s3, BUCKET, job)
    output = s3.head_object(Bucket=BUCKET, Key=batch.results_key(KEY.removeprefix(batch.IN_PREFIX)))["ContentLength"]
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "rss_after_imports_mb": round(baseline),
        "peak_rss_mb": round(peak_mb()),
        "results": summary["results"],
        "output_bytes": output,
    }


def run_step(*args: str, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.batch_memory", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import boto3

    from newsgen.batch.framing import json_lines
    from newsgen.batch.layout import chunk_output_key

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from moto.server import ThreadedMotoServer as S; s=S(ip_address='127.0.0.1', port={port}, verbose=False); s.start(); import time; time.sleep(10**6)",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                s3 = boto3.client("s3")
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.1)
        boto3.client("sqs").create_queue(QueueName="bench-chunks")
        pad = "x" * (LINE_BYTES - 75)
        body = b"".join(
            (json.dumps({"id": i, "task": "headline", "prompt": f"Line {i} {pad}"}) + "\n").encode()
            for i in range(LINES)
        )
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
        dispatch = run_step("dispatch", env=env)
        # Each chunk's output as a worker writes it: a result of ~1 KB of text per line.
        text = "Generated text " + "y" * 900
        result = {
            "results": [{"text": text, "finish_reason": "length", "generated_tokens": 24}],
            "model": {"task": "headline", "version": "bench"},
            "synthetic": True,
        }
        for chunk in range(dispatch["chunks"]):
            entries = [{"id": chunk * 50 + i, "line": chunk * 50 + i + 1, "result": result} for i in range(50)]
            s3.put_object(Bucket=BUCKET, Key=chunk_output_key(dispatch["job"], chunk), Body=json_lines(entries))
        assemble = run_step("assemble", dispatch["job"], env=env)
    finally:
        server.terminate()
        server.wait()
    report = {
        "command": "make bench-batch",
        "cpu": cpu(),
        "input_bytes": len(body),
        "input_lines": LINES,
        "dispatch": dispatch,
        "assembly": assemble,
    }
    (ROOT / "bench" / "batch-memory.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["dispatch"]:
        print(json.dumps(step_dispatch()))
    elif sys.argv[1:2] == ["assemble"]:
        print(json.dumps(step_assemble(sys.argv[2])))
    else:
        main()
