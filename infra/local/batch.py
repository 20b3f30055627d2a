"""`make batch FILE=prompts.jsonl`: drop a prompts file into the local S3 of a running `make run` and wait
for its answer, as a user would with `aws s3 cp` against the deployed stack. `make redrive` sends the dead
chunks of failed jobs back to the chunk queue (`--bucket`/`--queue-url` and `--endpoint ''` for a deployed
stack, with the stack's ResultsBucket and BatchQueueUrl outputs).

Without --endpoint both follow the running `make run` (its ports, from harness.RUN_STATE). `submit` exits 0
only for a `complete` job: 1 for a `partial` or `failed` one (after saving its results), 2 when no `make run`
is up."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from infra.local import harness


def clients(endpoint: str | None) -> harness.Clients:
    from botocore.config import Config

    return harness.clients(endpoint, Config(retries={"max_attempts": 1}))


def submit(args) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from newsgen import batch

    if not args.file.is_file():
        sys.exit(f"error: FILE={args.file}: no such file")
    s3 = clients(args.endpoint).s3
    key = f"{batch.IN_PREFIX}{args.file.name}"
    try:
        etag = s3.put_object(Bucket=args.bucket, Key=key, Body=args.file.read_bytes())["ETag"].strip('"')
    except (BotoCoreError, ClientError) as exc:
        sys.exit(f"error: cannot reach s3://{args.bucket} at {args.endpoint} ({exc}); start `make run` first")
    print(f"uploaded s3://{args.bucket}/{key}; waiting for {batch.summary_key(args.file.name)} …", flush=True)
    deadline = time.monotonic() + args.timeout
    summary: dict = {}
    while time.monotonic() < deadline:
        try:
            summary = json.loads(
                s3.get_object(Bucket=args.bucket, Key=batch.summary_key(args.file.name))["Body"].read()
            )
        except s3.exceptions.NoSuchKey:
            summary = {}
        # The answer to this upload, not to an earlier one of the same name.
        if summary.get("input", {}).get("etag") == etag and summary["status"] != "running":
            break
        time.sleep(1)
    else:
        sys.exit(
            f"error: no answer after {args.timeout:.0f}s (last summary: {summary.get('status', 'none')}); "
            "see the `make run` output"
        )
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    local = None
    if "results_file" in summary:  # a job that ran: its lines' results and errors
        args.output_dir.mkdir(parents=True, exist_ok=True)
        local = args.output_dir / f"{args.file.name}.results.jsonl"  # the whole name: x.csv and x.jsonl differ
        s3.download_file(args.bucket, batch.results_key(args.file.name), str(local))
        print(f"output: {local}")
    if summary["status"] != "complete":
        sys.exit(verdict(summary, local))


def verdict(summary: dict, local: Path | None) -> str:
    """The one line a job that is not complete ends with."""
    where = f"; each line's error is in {local}" if local else ""
    again = f"; once the cause is fixed: make redrive JOB={summary['job']}" if summary.get("chunks_failed") else ""
    if summary["status"] == "failed":
        return f"error: the job failed: {summary.get('reason')}{where}{again}"
    kinds = ", ".join(f"{kind}: {count:,}" for kind, count in summary["errors_by_type"].items())
    failed = f"{summary['errors']:,} of {summary['lines']:,} lines failed ({kinds})"
    return f"error: the job is partial: {failed}{where}{again}"


def endpoint(args) -> str | None:
    """--endpoint ('' for AWS), else the running `make run`'s S3; one line and exit 2 when none is up."""
    if args.endpoint is not None:
        return args.endpoint or None
    state = harness.RunState.read(args.run_state)
    if state is None:
        print(
            f"error: no `make run` is up ({args.run_state} names none): start `make run` first, or name its "
            "local S3 with S3_PORT=<port>",
            file=sys.stderr,
        )
        sys.exit(2)
    return state.s3


def redrive(args) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from newsgen import batch

    local = clients(args.endpoint)
    s3, sqs = local.s3, local.sqs
    try:
        queue_url = args.queue_url or sqs.get_queue_url(QueueName=harness.BATCH_QUEUE)["QueueUrl"]
        sent = batch.redrive(s3, args.bucket, lambda messages: batch.send_chunks(sqs, queue_url, messages), args.job)
    except (BotoCoreError, ClientError) as exc:
        sys.exit(f"error: cannot reach the batch bucket or queue ({exc}); start `make run` first")
    print(f"sent {sent} dead chunk(s) back to the chunk queue" + (f" (job {args.job})" if args.job else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.local.batch", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint", default=None, help="S3/SQS endpoint; '' for AWS (default: the running `make run`'s)"
    )
    parser.add_argument(
        "--run-state", type=Path, default=harness.RUN_STATE, help="where a running `make run` names its endpoints"
    )
    parser.add_argument("--bucket", default=harness.BATCH_BUCKET, help="the batch bucket (default: make run's)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("submit", help="upload a prompts file and wait for its answer")
    run.add_argument("file", type=Path, help="a .jsonl or .csv prompts file")
    run.add_argument("--timeout", type=float, default=1800)
    run.add_argument("--output-dir", type=Path, default=harness.STATE_DIR / "batch")
    again = commands.add_parser("redrive", help="send dead chunks back to the chunk queue")
    again.add_argument("--job", default=None, help="one job's id (its summary's `job`); default: all")
    again.add_argument("--queue-url", default=None, help="the chunk queue (default: make run's)")
    args = parser.parse_args(argv)
    args.endpoint = endpoint(args)
    {"submit": submit, "redrive": redrive}[args.command](args)


if __name__ == "__main__":
    main()
