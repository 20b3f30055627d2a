"""The handlers under the AWS Lambda Runtime Interface Emulator + awslambdaric (infra/local/rie.py): the real
Lambda runtime path, without Docker. Each function is its own process, started by the emulator as Lambda
starts it, and invoked through the emulator's Lambda invoke API on 127.0.0.1; models and batch files are in
the moto server of the other tests.

The emulator comes in the aws-sam-cli wheel, in .venv-sam: built here with `make .venv-sam/.installed` when
missing (about 30 s); the test is skipped only when pip cannot reach the package index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local import harness, rie
from infra.local.harness import s3_event, sqs_event
from infra.local.triggers import create_queues
from newsgen import batch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What pip prints when the package index cannot be reached (no network, proxy refused, DNS).
OFFLINE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "ProxyError",
    "Network is unreachable",
    "Could not fetch URL",
    "(from versions: none)",
)


@pytest.fixture(scope="module")
def emulator() -> Path:
    """The RIE binary; builds .venv-sam with the Makefile target if needed."""
    import importlib.util

    if importlib.util.find_spec("awslambdaric") is None:
        pytest.fail(
            f"awslambdaric is not installed in {sys.executable}: it belongs in the dev extra (pip install -e '.[dev]')"
        )
    try:
        return rie.find_rie()
    except rie.RieError:
        pass
    python = getattr(sys, "_base_executable", None) or sys.executable
    done = subprocess.run(
        ["make", rie.SAM_TARGET, f"PYTHON={python}"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        if any(sign in output for sign in OFFLINE):
            pytest.skip(
                f"cannot build .venv-sam (aws-sam-cli ships the Lambda RIE): pip cannot reach the package index:\n{output[-1500:]}"
            )
        pytest.fail(f"`make {rie.SAM_TARGET}` failed ({done.returncode}):\n{output[-4000:]}")
    return rie.find_rie()


@pytest.fixture
def function_env(emulator, published, s3_endpoint, tmp_path):
    def make(
        function: str, queue_url: str | None = None, results_bucket: str | None = None, **extra: str
    ) -> dict[str, str]:
        env = harness.function_env(
            function,
            s3_endpoint,
            model_bucket=published["bucket"],
            model_prefix=published["prefix"],
            cache_dir=tmp_path / f"cache-{function}",
            queue_url=queue_url,
            results_bucket=results_bucket,
            watermark_keys_file=Path(os.environ["WATERMARK_KEYS_FILE"]),
        )
        return {**env, **extra}

    return make


def emulate(function: str, env: dict[str, str]):
    return rie.emulated_function(function, env, timeout_s=min(harness.functions()[function].timeout_s, 120))


def report(label: str, seconds: float) -> None:
    print(f"\n[rie] {label}: {seconds:.2f}s", file=sys.stderr)


def body_of(response: dict) -> dict:
    assert set(response) >= {"statusCode", "body"}, response
    return json.loads(response["body"])


def test_api_under_the_runtime_emulator(function_env):
    event = harness.event("api-headlines")
    request = json.loads(event["body"])
    request["parameters"].update(max_new_tokens=6)
    event["body"] = json.dumps(request)
    with emulate("api", function_env("api")) as invoke:
        cold = invoke(event)
        cold_s = invoke.durations[-1]
        warm = invoke(event)
        warm_s = invoke.durations[-1]
        bad = invoke({**event, "body": '{"prompt": "City council", "n": '})
        logs = invoke.logs()

    assert cold["statusCode"] == 200, f"{cold}\n{logs[-4000:]}"
    answer = body_of(cold)
    assert answer["synthetic"] is True and len(answer["results"]) == request["n"]
    assert all(r["text"].startswith("City council") for r in answer["results"])
    assert answer["model"][0]["task"] == "headline"
    assert warm["statusCode"] == 200 and body_of(warm)["results"] == answer["results"]  # same seed, same text
    assert bad["statusCode"] == 400
    headers = {
        **{k: ", ".join(v) for k, v in (bad.get("multiValueHeaders") or {}).items()},
        **(bad.get("headers") or {}),
    }
    assert headers["Content-Type"] == "application/json"
    assert body_of(bad)["error_type"] == "validation_error"
    # The emulator ran it as Lambda does: an init phase, then invocations with a request id and a report.
    assert "INIT REPORT" in logs and logs.count("REPORT RequestId") == 3
    report("api cold invoke (init: imports + model download/load, then generation)", cold_s)
    report("api warm invoke", warm_s)
    assert warm_s < cold_s


def upload_input(s3, bucket: str, key: str, lines: list) -> tuple[dict, batch.Upload]:
    """Put a prompts file; returns its S3 event (the object's real etag, a sequencer) and the Upload it names."""

    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    sequencer = f"{time.time_ns():X}"
    event = s3_event(bucket, key, len(body), put["ETag"], sequencer)
    return event, batch.Upload(bucket=bucket, key=key, etag=put["ETag"].strip('"'), sequencer=sequencer, size=len(body))


def receive_all(sqs, queue_url: str, count: int) -> list[dict]:
    messages = []
    for _ in range(10):
        messages += sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )
        if len(messages) >= count:
            break
    assert len(messages) == count, messages
    return messages


def read_output(s3, bucket: str, name: str) -> tuple[dict, list[dict]]:

    summary = json.loads(s3.get_object(Bucket=bucket, Key=batch.summary_key(name))["Body"].read())
    raw = s3.get_object(Bucket=bucket, Key=batch.results_key(name))["Body"].read().decode()
    return summary, [json.loads(line) for line in raw.splitlines()]


def test_batch_under_the_runtime_emulator(function_env, published, s3):
    import boto3

    sqs = boto3.client("sqs")
    bucket = published["bucket"]
    queue_url, _ = create_queues(sqs, f"rie-{bucket}", max_receive_count=2, visibility_timeout=60)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    cheap = {"max_new_tokens": 3, "do_sample": False}
    lines = [{"id": f"h{i}", "task": "headline", "prompt": "Mayor", "parameters": cheap} for i in range(4)]
    lines.append({"id": "a0", "task": "article", "headline": "Town votes on the harbor ferry", "parameters": cheap})
    event, upload = upload_input(s3, bucket, "batch/in/rie-job.jsonl", lines)

    dispatch_env = function_env("batch-dispatch", queue_url=queue_url, BATCH_CHUNK_LINES="2")
    with emulate("batch-dispatch", dispatch_env) as invoke:
        dispatched = invoke(event)
        dispatch_s = invoke.durations[-1]
        dispatch_logs = invoke.logs()
    assert dispatched == {"jobs": [{"job": upload.job, "status": "running", "lines": 5, "chunks": 3}]}, (
        f"{dispatched}\n{dispatch_logs[-4000:]}"
    )

    messages = receive_all(sqs, queue_url, 3)
    assert sorted(batch.ChunkMessage.model_validate_json(m["Body"]).chunk for m in messages) == [0, 1, 2]
    with emulate("batch-worker", function_env("batch-worker")) as invoke:
        # One message per invocation, as the template's BatchSize 1 delivers them.
        answers = [invoke(sqs_event([message], queue_arn)) for message in messages]
        cold_s, warm_s = invoke.durations[0], max(invoke.durations[1:])
        logs = invoke.logs()
    assert answers == [{"batchItemFailures": []}] * 3, f"{answers}\n{logs[-4000:]}"
    sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
    )

    summary, entries = read_output(s3, bucket, "rie-job.jsonl")
    assert len(entries) == len(lines)
    assert [e["id"] for e in entries] == [line["id"] for line in lines]
    assert [e["line"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(e["result"]["synthetic"] and e["result"]["results"][0]["text"] for e in entries)
    assert summary["status"] == "complete" and summary["job"] == upload.job
    assert summary["lines"] == 5 and summary["results"] == 5 and summary["errors"] == 0 and summary["chunks"] == 3
    assert summary["input"]["etag"] == upload.etag
    report("batch dispatcher cold invoke", dispatch_s)
    report("batch worker cold invoke (1 chunk, init included)", cold_s)
    report("batch worker warm invoke (1 chunk, slowest)", warm_s)


def test_dead_letters_under_the_runtime_emulator(function_env, published, s3):
    """Chunks that reach the dead-letter queue: the recorder (no torch, like the dispatcher) answers their lines
    as errors and assembles the job (failed here: no line has a result); a message that is no chunk is kept."""
    import boto3

    sqs = boto3.client("sqs")
    bucket = published["bucket"]
    queue_url, dlq_url = create_queues(sqs, f"rie-dead-{bucket}", max_receive_count=1, visibility_timeout=0)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lines = [
        {"id": "h0", "task": "headline", "prompt": "Mayor"},
        {"id": "bad", "task": "poem"},
        "",
        {"id": "h1", "task": "headline", "prompt": "Harbor"},
    ]
    event, upload = upload_input(s3, bucket, "batch/in/dead/rie-dead.jsonl", lines)
    with emulate(
        "batch-dispatch", function_env("batch-dispatch", queue_url=queue_url, BATCH_CHUNK_LINES="2")
    ) as invoke:
        dispatched = invoke(event)
    assert dispatched["jobs"][0]["chunks"] == 2, dispatched
    # No worker: every chunk "fails" (received and never deleted); the next receive past maxReceiveCount moves
    # it to the dead-letter queue, as SQS does.
    receive_all(sqs, queue_url, 2)
    assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
    dead = receive_all(sqs, dlq_url, 2)
    unreadable = {**dead[0], "MessageId": "not-a-chunk", "Body": "this is not a chunk message"}

    recorder_env = function_env("batch-dead-letters", results_bucket=bucket)
    assert recorder_env["RESULTS_BUCKET"] == bucket
    with emulate("batch-dead-letters", recorder_env) as invoke:
        answer = invoke(sqs_event([*dead, unreadable], dlq_arn))
        logs = invoke.logs()
    assert answer == {"batchItemFailures": []}, f"{answer}\n{logs[-4000:]}"

    summary, entries = read_output(s3, bucket, "dead/rie-dead.jsonl")
    assert summary["status"] == "failed" and summary["job"] == upload.job, summary  # no line has a result
    assert summary["chunks_failed"] == 2 and summary["failed_lines"] == [[1, 1], [4, 4]], summary
    assert [e["line"] for e in entries] == [1, 2, 3, 4]
    assert [e.get("error", {}).get("error_type") for e in entries] == [
        "chunk_failed",
        "validation_error",
        None,
        "chunk_failed",
    ]
    assert entries[2]["skipped"] == "blank line"
    kept = s3.list_objects_v2(Bucket=bucket, Prefix=batch.WORK_PREFIX + "dead/")["Contents"]
    assert len([o for o in kept if "/_unreadable/" in o["Key"]]) == 1
    assert len([o for o in kept if f"/{upload.job}/" in o["Key"]]) == 2  # kept for redrive


def test_bundled_batch_events_describe_the_example_upload(s3, bucket):
    """The named event s3-batch-in is the S3 event of harness.EXAMPLE_INPUT's upload, and sqs-batch-chunk
    the chunk message the dispatcher sends for it (checked by dispatching the same bytes in a test bucket)."""
    import hashlib

    from aws_lambda_powertools.utilities.data_classes import S3Event

    from handlers.batch import upload_of

    upload = upload_of(next(S3Event(harness.event("s3-batch-in")).records))
    assert (upload.bucket, upload.key, upload.size) == (
        harness.BATCH_BUCKET,
        harness.EXAMPLE_KEY,
        len(harness.EXAMPLE_INPUT),
    )
    assert upload.etag == hashlib.md5(harness.EXAMPLE_INPUT).hexdigest()  # S3's ETag of a single-part upload
    assert upload.sequencer and upload.format == "jsonl"
    record = harness.event("sqs-batch-chunk")["Records"][0]
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    message = batch.ChunkMessage.model_validate_json(record["body"])
    assert message.job == upload.job and message.bucket == upload.bucket

    put = s3.put_object(Bucket=bucket, Key=upload.key, Body=harness.EXAMPLE_INPUT)
    assert put["ETag"].strip('"') == upload.etag
    here = upload.model_copy(update={"bucket": bucket})
    sent: list = []
    summary = batch.dispatch(s3, here, sent.extend, chunk_lines=50, chunk_tokens=16384)
    assert summary["status"] == "running" and summary["lines"] == 2
    assert [m.model_dump() for m in sent] == [{**message.model_dump(), "bucket": bucket, "job": here.job}]


def test_function_env_names_the_settings_it_sets(tmp_path):
    from newsgen.settings import Settings

    env = harness.function_env(
        "batch-dead-letters",
        "http://127.0.0.1:1",
        model_bucket="m",
        cache_dir=tmp_path,
        queue_url="http://q",
        results_bucket="b",
        watermark_keys_file=tmp_path / "k",
    )
    assert env["BATCH_QUEUE_URL"] == "http://q" and env["RESULTS_BUCKET"] == "b"
    assert env["MODEL_BUCKET"] == "m" and env["WATERMARK_KEYS_FILE"] == str(tmp_path / "k")
    fields = {name.upper() for name in Settings.model_fields}
    assert {"BATCH_QUEUE_URL", "RESULTS_BUCKET", "WATERMARK_KEYS_FILE", "MODEL_CACHE_DIR"} <= fields
    assert env["POWERTOOLS_SERVICE_NAME"] == "newsgen-batch-dead-letters"  # the template's own variables


def test_missing_emulator_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_RIE", raising=False)
    with pytest.raises(rie.RieError, match=r"make \.venv-sam/\.installed"):
        rie.find_rie(tmp_path / "no-venv")


def test_a_failing_function_is_reported_and_every_process_stopped(emulator):
    started = time.monotonic()
    missing = harness.Function("broken", "Broken", "handlers.no_such_module.handler", 512, 20, {})
    with rie.emulated_function(missing, {"AWS_DEFAULT_REGION": "us-east-1"}) as invoke:
        answer = invoke({})
        pids = invoke.pids()
    assert answer["errorType"] == "Runtime.ImportModuleError", answer
    assert not [pid for pid in pids if rie._alive(pid)]
    assert time.monotonic() - started < 30


def test_sam_validate_lint_passes(emulator):
    """`sam validate --lint` from the SAM CLI in .venv-sam (the emulator fixture builds it)."""
    sam = ROOT / ".venv-sam" / "bin" / "sam"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [str(sam), "validate", "--lint", "--template", str(ROOT / "template.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in (done.stdout + done.stderr).lower()
