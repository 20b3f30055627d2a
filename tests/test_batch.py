"""Batch generation: S3 trigger → dispatcher → SQS chunks → worker (powertools BatchProcessor) → output,
all against a moto server over HTTP, driven by the same local triggers that `make run` uses."""

import json

import pytest

from infra.local.triggers import S3Trigger, SqsTrigger, create_queues
from newsgen import batch


@pytest.fixture
def sqs(s3_endpoint):
    import boto3

    return boto3.client("sqs")


@pytest.fixture
def pipeline(published, service_for, sqs, s3, monkeypatch, request):
    """Dispatcher and worker wired to a fresh queue pair; returns helpers to run a job to completion."""
    from handlers import batch as handlers

    name = f"chunks-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    queue_url, dlq_url = create_queues(sqs, name, max_receive_count=2, visibility_timeout=0)
    monkeypatch.setenv("BATCH_QUEUE_URL", queue_url)
    monkeypatch.setattr(handlers, "CHUNK_LINES", 100)
    monkeypatch.setattr(handlers, "_service", service_for(published["bucket"]))
    bucket = published["bucket"]
    s3_trigger = S3Trigger(s3, bucket, handlers.dispatch_handler)
    sqs_trigger = SqsTrigger(sqs, queue_url, handlers.worker_handler, batch_size=5)

    class Pipeline:
        def run(self, name: str, body: bytes, max_polls: int = 50) -> dict:
            s3.put_object(Bucket=bucket, Key=f"batch/in/{name}", Body=body)
            assert s3_trigger.poll_once() == 1
            for _ in range(max_polls):
                if not sqs_trigger.poll_once():
                    break
            job = name.rsplit(".", 1)[0]
            summary = json.loads(s3.get_object(Bucket=bucket, Key=f"batch/out/{job}.summary.json")["Body"].read())
            raw = s3.get_object(Bucket=bucket, Key=f"batch/out/{job}.jsonl")["Body"].read().decode()
            return {"summary": summary, "lines": [json.loads(line) for line in raw.splitlines()]}

    p = Pipeline()
    p.bucket, p.queue_url, p.dlq_url, p.sqs_trigger, p.handlers = bucket, queue_url, dlq_url, sqs_trigger, handlers
    return p


def test_thousand_lines_with_one_percent_malformed(pipeline):
    malformed = {
        37: b'{"id": "bad-json", "task": "headline"',
        150: b'{"id": "bad-task", "task": "poem"}',
        260: b'{"id": "bad-n", "task": "headline", "n": 0}',
        333: b'{"id": "unknown-field", "task": "headline", "colour": "red"}',
        480: b'{"id": "no-headline", "task": "article"}',
        555: b'[1, 2, 3]',
        640: b'{"id": "bad-temp", "task": "headline", "parameters": {"temperature": -1}}',
        777: b'{"id": "bad-bytes", "task": "headline", "prompt": "caf\xe9"}',
        888: b'{"id": "too-long", "task": "article", "headline": "' + b"x " * 490 + b'"}',
        999: b'{"id": "nan", "task": "headline", "parameters": {"top_p": NaN}}',
    }
    cheap = {"max_new_tokens": 3, "do_sample": False, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0}
    lines = []
    for i in range(1000):
        if i in malformed:
            lines.append(malformed[i])
        elif i % 50 == 0:
            lines.append(json.dumps({"id": f"a{i}", "task": "article", "headline": f"Parents in Westmere sue over bus route {i}", "parameters": cheap}).encode())
        else:
            lines.append(json.dumps({"id": f"h{i}", "task": "headline", "prompt": "City council", "parameters": cheap}).encode())
    out = pipeline.run("thousand.jsonl", b"\n".join(lines) + b"\n")
    summary, entries = out["summary"], out["lines"]
    assert len(entries) == 1000
    assert [e["line"] for e in entries] == list(range(1, 1001))  # every input line once, in order
    assert summary["lines"] == 1000 and summary["results"] == 990 and summary["errors"] == 10
    assert summary["chunks"] == 10 and summary["synthetic"] is True
    errors = {e["line"] - 1: e for e in entries if "error" in e}
    assert set(errors) == set(malformed)
    assert errors[37]["id"] is None or errors[37]["id"] == "bad-json"
    assert errors[150]["id"] == "bad-task" and errors[150]["error"]["error_type"] == "validation_error"
    assert errors[888]["error"]["error_type"] == "invalid_request" and "context" in errors[888]["error"]["error"]
    good = [e for e in entries if "result" in e]
    assert all(e["result"]["synthetic"] and e["result"]["results"][0]["text"] for e in good)
    assert {e["id"] for e in good} == {f"{'a' if i % 50 == 0 else 'h'}{i}" for i in range(1000) if i not in malformed}
    assert any(v.startswith("headline:") for v in summary["model_versions"])


def test_csv_input(pipeline):
    body = (
        "id,task,prompt,headline,n,parameters\n"
        '1,headline,Mayor,,2,"{""max_new_tokens"": 4, ""seed"": 5}"\n'
        '2,article,,Town votes on the harbor ferry,1,"{""max_new_tokens"": 4}"\n'
        "3,news,,,1,{not json}\n"
    ).encode()
    out = pipeline.run("small.csv", body)
    assert out["summary"]["lines"] == 3 and out["summary"]["results"] == 2 and out["summary"]["errors"] == 1
    first, second, third = out["lines"]
    assert first["id"] == "1" and len(first["result"]["results"]) == 2
    assert first["result"]["results"][0]["text"].startswith("Mayor")
    assert second["result"]["model"]["task"] == "article"
    assert third["id"] == "3" and "parameters column is not JSON" in third["error"]["error"]


def test_redelivered_message_does_not_duplicate(pipeline, s3):
    lines = b"\n".join(json.dumps({"id": i, "task": "headline", "parameters": {"max_new_tokens": 3}}).encode() for i in range(5))
    first = pipeline.run("twice.jsonl", lines)
    message = batch.ChunkMessage(bucket=pipeline.bucket, job="twice", input_key="batch/in/twice.jsonl", chunk=0, chunks=1)
    event = {"Records": [{"messageId": "m1", "receiptHandle": "r1", "body": message.model_dump_json(), "attributes": {},
                          "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                          "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}]}
    from events import FakeContext

    assert pipeline.handlers.worker_handler(event, FakeContext()) == {"batchItemFailures": []}
    raw = s3.get_object(Bucket=pipeline.bucket, Key="batch/out/twice.jsonl")["Body"].read().decode().splitlines()
    assert [json.loads(line)["id"] for line in raw] == [0, 1, 2, 3, 4] == [e["id"] for e in first["lines"]]


def test_poison_message_goes_to_the_dlq_and_others_still_run(pipeline, sqs, s3):
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="this is not a chunk message")
    out = pipeline.run("alongside.jsonl", json.dumps({"id": "ok", "task": "headline", "parameters": {"max_new_tokens": 3}}).encode())
    assert out["summary"]["results"] == 1
    for _ in range(6):  # the poison message returns (visibility timeout 0) until its receive count is used up
        pipeline.sqs_trigger.poll_once()
    dead = sqs.receive_message(QueueUrl=pipeline.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["this is not a chunk message"]
    assert not sqs.receive_message(QueueUrl=pipeline.queue_url).get("Messages")


def test_files_that_are_not_batch_inputs_are_left_alone(pipeline, s3):
    s3.put_object(Bucket=pipeline.bucket, Key="batch/in/notes.txt", Body=b"hello")
    from handlers.batch import dispatch_handler
    from infra.local.triggers import s3_event
    from events import FakeContext

    assert dispatch_handler(s3_event(pipeline.bucket, "batch/in/notes.txt", 5, "x"), FakeContext()) == {"jobs": []}
    assert s3.get_object(Bucket=pipeline.bucket, Key="batch/in/notes.txt")["Body"].read() == b"hello"


def test_empty_file_still_gets_a_summary(pipeline):
    out = pipeline.run("empty.jsonl", b"\n\n")
    assert out["lines"] == [] and out["summary"]["lines"] == 0 and out["summary"]["errors"] == 0
