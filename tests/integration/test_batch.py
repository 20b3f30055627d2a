"""Batch generation: S3 trigger → dispatcher → SQS chunks → worker (powertools BatchProcessor) → output,
all against a moto server over HTTP, driven by the same local triggers that `make run` uses."""

import json

from newsgen import batch


def test_thousand_lines_with_one_percent_malformed(pipeline):
    malformed = {
        37: b'{"id": "bad-json", "task": "headline"',
        150: b'{"id": "bad-task", "task": "poem"}',
        260: b'{"id": "bad-n", "task": "headline", "n": 0}',
        333: b'{"id": "unknown-field", "task": "headline", "colour": "red"}',
        480: b'{"id": "no-headline", "task": "article"}',
        555: b"[1, 2, 3]",
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
            lines.append(
                json.dumps(
                    {
                        "id": f"a{i}",
                        "task": "article",
                        "headline": f"Parents in Westmere sue over bus route {i}",
                        "parameters": cheap,
                    }
                ).encode()
            )
        else:
            lines.append(
                json.dumps({"id": f"h{i}", "task": "headline", "prompt": "City council", "parameters": cheap}).encode()
            )
    out = pipeline.run("thousand.jsonl", b"\n".join(lines) + b"\n")
    summary, entries = out["summary"], out["lines"]
    assert len(entries) == 1000
    assert [e["line"] for e in entries] == list(range(1, 1001))  # every input line once, in order
    assert summary["status"] == "partial"  # 10 malformed lines
    assert summary["lines"] == 1000 and summary["results"] == 990 and summary["errors"] == 10
    assert summary["chunks"] == 10 and summary["synthetic"] is True
    assert summary["input"]["key"] == "batch/in/thousand.jsonl" and summary["input"]["etag"]
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
        b"id,task,prompt,headline,n,parameters\n"
        b'1,headline,Mayor,,2,"{""max_new_tokens"": 4, ""seed"": 5}"\n'
        b'2,article,,Town votes on the harbor ferry,1,"{""max_new_tokens"": 4}"\n'
        b"3,news,,,1,{not json}\n"
    )
    out = pipeline.run("small.csv", body)
    assert out["summary"]["lines"] == 3 and out["summary"]["results"] == 2 and out["summary"]["errors"] == 1
    first, second, third = out["lines"]
    assert first["id"] == "1" and len(first["result"]["results"]) == 2
    assert first["result"]["results"][0]["text"].startswith("Mayor")
    assert second["result"]["model"][0]["task"] == "article"
    assert third["id"] == "3" and "parameters column is not valid JSON" in third["error"]["error"]


def test_redelivered_message_does_not_duplicate(pipeline, s3, sqs):
    lines = b"\n".join(
        json.dumps({"id": i, "task": "headline", "parameters": {"max_new_tokens": 3}}).encode() for i in range(5)
    )
    sent = []
    original = batch.send_chunks
    pipeline.handlers.batch.send_chunks = lambda sqs_, url, messages: (
        sent.extend(messages),
        original(sqs_, url, messages),
    )
    try:
        first = pipeline.run("twice.jsonl", lines)
    finally:
        pipeline.handlers.batch.send_chunks = original
    batch.send_chunks(sqs, pipeline.queue_url, sent)  # SQS delivers at least once
    pipeline.drain()
    again = pipeline.output("twice.jsonl")
    assert [e["id"] for e in again["lines"]] == [0, 1, 2, 3, 4] == [e["id"] for e in first["lines"]]
    assert again["summary"]["status"] == "complete" and again["summary"]["lines"] == 5


def test_poison_message_goes_to_the_dlq_and_others_still_run(pipeline, sqs, s3):
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="this is not a chunk message")
    out = pipeline.run(
        "alongside.jsonl", json.dumps({"id": "ok", "task": "headline", "parameters": {"max_new_tokens": 3}}).encode()
    )
    assert out["summary"]["results"] == 1
    assert not sqs.receive_message(QueueUrl=pipeline.queue_url).get("Messages")
    kept = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=pipeline.bucket, Prefix="batch/work/dead/_unreadable/").get("Contents", [])
    ]
    assert len(kept) == 1  # the recorder kept the unreadable message instead of dropping it
    body = json.loads(s3.get_object(Bucket=pipeline.bucket, Key=kept[0])["Body"].read())
    assert body["body"] == "this is not a chunk message"


def test_a_file_that_is_not_a_batch_input_gets_a_failed_summary(pipeline, s3):
    out = pipeline.run("notes.txt", b"hello")
    assert out["summary"]["status"] == "failed" and out["summary"]["error_type"] == "not_a_batch_input"
    assert "jsonl" in out["summary"]["reason"] and out["lines"] is None
    assert s3.get_object(Bucket=pipeline.bucket, Key="batch/in/notes.txt")["Body"].read() == b"hello"  # left alone


def test_blank_lines_each_get_an_output_line(pipeline):
    out = pipeline.run("empty.jsonl", b"\n\n")
    assert out["summary"]["status"] == "complete"
    assert out["summary"]["lines"] == 2 and out["summary"]["skipped"] == 2 and out["summary"]["errors"] == 0
    assert out["lines"] == [
        {"id": None, "line": 1, "skipped": "blank line"},
        {"id": None, "line": 2, "skipped": "blank line"},
    ]


def test_an_empty_file_is_a_complete_job_of_no_lines(pipeline):
    out = pipeline.run("nothing.jsonl", b"")
    assert out["summary"]["status"] == "complete" and out["summary"]["lines"] == 0 and out["lines"] == []


def test_a_chunk_without_time_left_is_never_stored_as_results(pipeline, monkeypatch):
    """The old worker gave later chunks of an invocation the 0.05 s minimum budget and stored their 1-token
    texts as results (finish_reason "time"). Now such a chunk is retried, then reported as failed."""
    service = pipeline.handlers.service()
    monkeypatch.setattr(service, "_budget", lambda deadline, share=1.0: 0.0)  # no time left for generation
    body = b"\n".join(
        json.dumps({"id": i, "task": "headline", "parameters": {"max_new_tokens": 20}}).encode() for i in range(2)
    )
    out = pipeline.run("late.jsonl", body)
    assert out["summary"]["status"] == "failed" and out["summary"]["results"] == 0
    assert out["summary"]["failed_lines"] == [[1, 2]]
    assert all(e["error"]["error_type"] == "chunk_failed" and "time" in e["error"]["error"] for e in out["lines"])
