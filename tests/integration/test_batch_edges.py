"""Batch jobs at the edges: whatever the bytes, every upload gets a summary, every input line exactly one
output line, and one line can only fail itself. The generation here is an echo (conftest.EchoService), so
what comes out can be checked against what went in; the real models run in test_batch.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsgen import batch
from newsgen.batch import inputs
from newsgen.batch.framing import json_line, json_lines, read_json_lines
from newsgen.batch.layout import Upload

LINE_BREAKERS = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c\r"


def jsonl(*requests: dict) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in requests)


# --- framing ------------------------------------------------------------------------------------------
any_text = st.text(alphabet=st.characters(codec=None, categories=None))  # surrogates and controls included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


@given(st.lists(json_values, max_size=6))
@settings(max_examples=300, deadline=None)
def test_the_framing_round_trips_any_json_and_no_line_reader_can_split_it(values):
    data = json_lines(values)
    assert list(read_json_lines(data)) == values
    assert data.count(b"\n") == len(values)
    # Readers that split on more than b"\n" (str.splitlines: U+2028, U+0085, \x1c …) see the same lines.
    assert data.decode("utf-8").splitlines() == [line.decode() for line in data.split(b"\n")[:-1]]


def test_a_line_with_every_line_breaking_character_stays_one_line():
    line = json_line({"id": "\ud800", "text": LINE_BREAKERS + "\x00"})
    assert line.count(b"\n") == 1 and len(line.decode().splitlines()) == 1
    assert json.loads(line) == {"id": "\ud800", "text": LINE_BREAKERS + "\x00"}


# --- one line fails only itself -------------------------------------------------------------------------
def test_line_separators_in_prompts_ids_and_generated_text(echo_pipeline):
    body = (
        jsonl(
            {"id": "lit\u2028sep", "task": "headline", "prompt": "Harbor\u2028ferry\u2029line\u0085news"},
            {"id": 2, "task": "article", "headline": "Storm\u2028closes the bridge"},
        )
        + b'{"id": "\\u2028escaped", "task": "headline", "prompt": "A\\u2028B"}\n'
        + b'{"id": "\\ud800", "task": "headline", "prompt": "lone surrogate id"}\n'
        + b'{"id": "ok", "task": "news", "prompt": "Council"}\n'
    )
    out = echo_pipeline.run("separators.jsonl", body)
    assert out["summary"]["status"] == "complete", out["summary"]
    assert [e["line"] for e in out["lines"]] == [1, 2, 3, 4, 5]
    assert [e["id"] for e in out["lines"]] == ["lit\u2028sep", 2, "\u2028escaped", "\ud800", "ok"]
    assert out["lines"][0]["result"]["results"][0]["text"] == "Harbor\u2028ferry\u2029line\u0085news · echo"
    assert out["lines"][2]["result"]["results"][0]["text"] == "A\u2028B · echo"
    assert out["raw"].decode().splitlines() == [line.decode() for line in out["raw"].split(b"\n")[:-1]]
    assert out["summary"]["results"] == 5


def test_hostile_lines_fail_alone(echo_pipeline):
    ok = json.dumps({"id": "ok", "task": "headline", "prompt": "Mayor"}).encode()
    hostile = {
        "nesting": b"[" * 20_000,
        "deep object": b'{"id": "deep", "task": "headline", "parameters": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
        "raw NUL": b'{"id": "nul", "task": "headline", "prompt": "a\x00b"}',
        "escaped NUL": b'{"id": "nul2", "task": "headline", "prompt": "a\\u0000b"}',
        "lone surrogate prompt": b'{"id": "sur", "task": "headline", "prompt": "x\\udc80"}',
        "not UTF-8": b'{"id": "latin1", "task": "headline", "prompt": "caf\xe9"}',
        "CR inside": b'{"id": "cr", "task": "headline",\r "prompt": "Mayor"}',
        "over the cap": b'{"id": "huge", "task": "headline", "prompt": "' + b"x" * (inputs.MAX_LINE_BYTES + 10) + b'"}',
        "binary": bytes(range(256)).replace(b"\n", b""),
    }
    body = b"\n".join([ok, *hostile.values(), ok]) + b"\n"
    out = echo_pipeline.run("hostile.jsonl", body)
    lines = out["lines"]
    assert out["summary"]["status"] == "partial" and len(lines) == len(hostile) + 2 == out["summary"]["lines"]
    assert [e["line"] for e in lines] == list(range(1, len(hostile) + 3))
    assert "result" in lines[0] and "result" in lines[-1]
    by_kind = dict(zip(hostile, lines[1:-1], strict=False))
    assert by_kind["CR inside"]["result"]["results"][0]["text"] == "Mayor · echo"  # a CR is JSON whitespace
    for kind, entry in by_kind.items():
        if kind != "CR inside":
            assert "error" in entry, kind
    assert "nested too deeply" in by_kind["nesting"]["error"]["error"]
    assert "nested too deeply" in by_kind["deep object"]["error"]["error"]
    assert "over the per-line cap" in by_kind["over the cap"]["error"]["error"]
    assert "not UTF-8" in by_kind["not UTF-8"]["error"]["error"] and by_kind["not UTF-8"]["id"] is None
    assert by_kind["lone surrogate prompt"]["error"]["details"][0]["type"] == "string_unicode"
    assert "control characters" in json.dumps(by_kind["escaped NUL"]["error"])
    assert by_kind["escaped NUL"]["id"] == "nul2"


def test_spreadsheet_csv(echo_pipeline):
    """What "CSV UTF-8" from a spreadsheet looks like: a byte-order mark, CRLF line ends, quoted fields with
    newlines and CRs in them, and a long field under the per-line cap."""
    long_id = "L" * (200 * 1024)  # over csv's default 128 KiB field limit
    body = (
        "\ufeffid,Task,prompt,headline,n,parameters\r\n"
        '1,headline,"Council\nvotes",,,\r\n'  # a line break inside a cell, as spreadsheets write it
        '2,article,,"Storm closes\n the bridge",2,"{""do_sample"": true}"\r\n'
        '3,headline,"a CR\r in a quoted cell",,,\r\n'
        f"{long_id},headline,Harbor,,,\r\n"
        ",,,,,\r\n"
        '4,news,"Caf\u00e9 owners",,1,\r\n'
    ).encode()
    out = echo_pipeline.run("sheet.csv", body)
    assert out["summary"]["status"] == "partial", out["summary"]  # record 3's control character
    lines = out["lines"]
    assert [e["line"] for e in lines] == [2, 4, 6, 7, 8, 9]  # a record is numbered by its first physical line
    assert lines[0]["result"]["results"][0]["text"] == "Council\nvotes · echo"
    assert lines[1]["id"] == "2" and len(lines[1]["result"]["results"]) == 2
    assert lines[1]["result"]["results"][0]["text"] == "Storm closes\n the bridge · echo"
    assert lines[2]["id"] == "3" and "control characters" in lines[2]["error"]["error"]  # one record, its own error
    assert lines[3]["id"] == long_id and "result" in lines[3]
    assert lines[4] == {"id": None, "line": 8, "skipped": "blank line"}
    assert lines[5]["result"]["results"][0]["headline"]["text"] == "Café owners · echo"


def test_a_broken_csv_row_fails_alone(echo_pipeline):
    body = (
        b"id,task,prompt\n"
        b"1,headline,Mayor\n"
        b"2,headline,caf\xe9\n"  # Latin-1
        b"3,headline,a,extra\n"
        b"4,headline,bare\rCR in an unquoted field\n"
        b"5,headline," + b"x" * (inputs.MAX_LINE_BYTES + 1) + b"\n"
        b"6,headline,Harbor\n"
    )
    out = echo_pipeline.run("broken.csv", body)
    lines = out["lines"]
    assert [e["line"] for e in lines] == [2, 3, 4, 5, 6, 7]
    assert "result" in lines[0] and "result" in lines[-1]
    assert "not UTF-8" in lines[1]["error"]["error"]
    assert "header names 3 columns" in lines[2]["error"]["error"]
    assert "not a valid CSV row" in lines[3]["error"]["error"]
    assert "per-line cap" in lines[4]["error"]["error"]


def test_jsonl_with_a_byte_order_mark(echo_pipeline):
    out = echo_pipeline.run("bom.jsonl", b"\xef\xbb\xbf" + jsonl({"id": 1, "task": "headline", "prompt": "Mayor"}))
    assert out["lines"][0]["result"]["results"][0]["text"] == "Mayor · echo"


@pytest.mark.parametrize(
    "name, body, error_type, words",
    [
        ("utf16.csv", "id,task\n1,headline\n".encode("utf-16"), "encoding", "UTF-16"),
        ("utf16.jsonl", '{"task": "headline"}\n'.encode("utf-16"), "encoding", "UTF-16"),
        ("columns.csv", b"id,task,colour\n1,headline,red\n", "unknown_columns", "colour"),
        ("noheader.csv", b"1,headline,Mayor\n", "no_header", "name the columns"),
        ("empty.csv", b"", "no_header", "empty"),
        ("latin1-header.csv", b"id,t\xe2che\n", "encoding", "UTF-8"),
        ("prompts.txt", b'{"task": "headline"}\n', "not_a_batch_input", ".jsonl or .csv"),
        ("prompts.json", b'[{"task": "headline"}]', "not_a_batch_input", ".jsonl or .csv"),
    ],
)
def test_files_that_cannot_be_jobs_get_a_failed_summary(echo_pipeline, name, body, error_type, words):
    out = echo_pipeline.run(name, body)
    summary = out["summary"]
    assert summary["status"] == "failed" and summary["error_type"] == error_type, summary
    assert words in summary["reason"] and summary["input"]["key"] == f"batch/in/{name}"
    assert out["lines"] is None


def test_caps_on_lines_and_bytes(echo_pipeline, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_RECORDS", 3)
    out = echo_pipeline.run("many.jsonl", jsonl(*[{"task": "headline"}] * 4))
    assert out["summary"]["status"] == "failed" and out["summary"]["error_type"] == "too_many_lines"
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 100)
    out = echo_pipeline.run("big.jsonl", jsonl(*[{"task": "headline", "prompt": "x" * 40}] * 2))
    assert out["summary"]["status"] == "failed" and out["summary"]["error_type"] == "too_large"


def test_chunks_are_cut_by_the_tokens_they_may_generate(echo_pipeline, monkeypatch):
    monkeypatch.setattr(echo_pipeline.handlers.settings, "batch_chunk_tokens", 1100)
    body = jsonl(
        *[
            {"id": i, "task": "headline", "n": 4, "parameters": {"max_new_tokens": 256, "do_sample": True}}
            for i in range(3)
        ],
        {"id": 3, "task": "headline", "parameters": {"max_new_tokens": 8}},
    )
    out = echo_pipeline.run("costly.jsonl", body)
    assert out["summary"]["chunks"] == 3 and out["summary"]["status"] == "complete"  # 1024 tokens a line
    assert [e["id"] for e in out["lines"]] == [0, 1, 2, 3]


# --- jobs never touch each other --------------------------------------------------------------------------
def test_overlapping_names_have_their_own_outputs(echo_pipeline):
    names = {"x.jsonl": "jsonl x", "x.csv": "csv x", "a.jsonl": "a", "a/b.jsonl": "a/b", "a.jsonl/b.jsonl": "dir"}
    for name, prompt in names.items():
        body = (
            f"task,prompt\nheadline,{prompt}\n".encode()
            if name.endswith(".csv")
            else jsonl({"task": "headline", "prompt": prompt})
        )
        echo_pipeline.upload(name, body)
    echo_pipeline.drain()
    for name, prompt in names.items():
        out = echo_pipeline.output(name)
        assert out["summary"]["status"] == "complete" and out["summary"]["input"]["key"] == f"batch/in/{name}"
        assert [e["result"]["results"][0]["text"] for e in out["lines"]] == [f"{prompt} · echo"]


def test_a_long_key_is_ordinary_input(echo_pipeline):
    name = "deep/" * 150 + "é" * 120 + ".jsonl"  # 1,000+ bytes: the output key would pass S3's 1,024
    out = echo_pipeline.run(name, jsonl({"task": "headline", "prompt": "Mayor"}))
    assert out["summary"]["status"] == "complete" and out["summary"]["input"]["key"] == f"batch/in/{name}"
    assert len(batch.results_key(name).encode()) <= 1024 and out["summary"]["results_file"].endswith(
        batch.results_key(name)
    )


def test_a_reupload_replaces_a_running_job_and_the_old_workers_write_nothing(echo_pipeline, s3, sqs):
    echo_pipeline.upload("report.jsonl", jsonl(*[{"id": f"old{i}", "task": "headline"} for i in range(3)]))
    echo_pipeline.upload("report.jsonl", jsonl({"id": "new", "task": "headline"}))  # before any worker ran
    echo_pipeline.drain()
    out = echo_pipeline.output("report.jsonl")
    assert out["summary"]["status"] == "complete" and [e["id"] for e in out["lines"]] == ["new"]


def test_a_superseded_job_that_finishes_last_leaves_the_newer_output(echo_pipeline, s3, sqs):
    """Two uploads of the same bytes (same etag): the older job can still read its input, so only the
    ownership check keeps it from overwriting the newer job's output when it finishes last."""
    body = jsonl({"id": "same", "task": "headline"})
    key = "batch/in/same.jsonl"
    s3.put_object(Bucket=echo_pipeline.bucket, Key=key, Body=body)
    etag = s3.head_object(Bucket=echo_pipeline.bucket, Key=key)["ETag"].strip('"')
    old, new = (
        Upload(bucket=echo_pipeline.bucket, key=key, etag=etag, sequencer=s, size=len(body)) for s in ("0A", "0B")
    )
    sent: dict[str, list] = {}
    for upload in (old, new):
        batch.dispatch(
            s3, upload, lambda messages, u=upload: sent.setdefault(u.job, messages), chunk_lines=50, chunk_tokens=16384
        )
    from conftest import EchoService

    service = EchoService()
    assert batch.process_chunk(s3, service, sent[new.job][0])["job"] == new.job
    assert batch.process_chunk(s3, service, sent[old.job][0]) is None  # superseded: no output written
    summary = json.loads(s3.get_object(Bucket=echo_pipeline.bucket, Key=batch.summary_key("same.jsonl"))["Body"].read())
    assert summary["job"] == new.job and summary["input"]["sequencer"] == "0B"
    # An older event delivered after the newer one is not dispatched at all.
    assert (
        batch.dispatch(
            s3, old, lambda m: pytest.fail("superseded upload dispatched"), chunk_lines=50, chunk_tokens=16384
        )
        is None
    )


def test_an_input_deleted_mid_run_fails_the_job(echo_pipeline, s3):
    echo_pipeline.upload("gone.jsonl", jsonl({"task": "headline"}))
    s3.delete_object(Bucket=echo_pipeline.bucket, Key="batch/in/gone.jsonl")
    echo_pipeline.drain()
    summary = echo_pipeline.output("gone.jsonl")["summary"]
    assert summary["status"] == "failed" and summary["error_type"] == "input_deleted"


# --- no silent truncation; failures reach someone ---------------------------------------------------------
def test_a_chunk_that_runs_out_of_time_is_retried_then_reported_never_stored_as_a_result(echo_pipeline, s3):
    from conftest import EchoService

    slow = EchoService(finish_reason="time")
    echo_pipeline.handlers.service = lambda: slow
    body = jsonl({"id": "a", "task": "headline"}, {"id": "b", "task": "poem"}, {"id": "c", "task": "headline"})
    out = echo_pipeline.run("slow.jsonl", body)
    summary = out["summary"]
    assert slow.calls == 2  # two attempts (the queue's maxReceiveCount), then the dead-letter queue
    assert summary["status"] == "failed" and summary["chunks_failed"] == 1 and summary["error_type"] == "no_results"
    assert summary["failed_lines"] == [[1, 1], [3, 3]] and summary["results"] == 0
    a, b, _c = out["lines"]
    assert a["error"]["error_type"] == "chunk_failed" and "time" in a["error"]["error"]
    assert b["error"]["error_type"] == "validation_error"  # its own problem, not the chunk's
    # The cause is fixed; the dead chunk is redriven and the job completes.
    echo_pipeline.handlers.service = lambda: EchoService()
    import boto3

    sent = batch.redrive(
        s3, echo_pipeline.bucket, lambda m: batch.send_chunks(boto3.client("sqs"), echo_pipeline.queue_url, m)
    )
    assert sent == 1
    echo_pipeline.drain()
    again = echo_pipeline.output("slow.jsonl")
    assert again["summary"]["status"] == "partial" and again["summary"]["results"] == 2  # b is still no request
    assert again["summary"]["chunks_failed"] == 0 and again["summary"]["failed_lines"] == []


def test_a_dispatcher_crash_is_answered_and_raised_for_the_retry(echo_pipeline, s3, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(batch.jobs, "plan", broken)
    s3.put_object(Bucket=echo_pipeline.bucket, Key="batch/in/crash.jsonl", Body=b"{}\n")
    with pytest.raises(RuntimeError):
        echo_pipeline.s3_trigger.poll_once()
    summary = echo_pipeline.output("crash.jsonl")["summary"]
    assert (
        summary["status"] == "failed" and summary["error_type"] == "internal_error" and "boom" not in summary["reason"]
    )


# --- the property: arbitrary prompts and ids round-trip ---------------------------------------------------
printable_or_not = st.text(alphabet=st.characters(codec=None, categories=None), max_size=40)


@given(
    st.lists(
        st.tuples(printable_or_not | st.integers(min_value=-(2**53), max_value=2**53), printable_or_not),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([True, False]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_ids_and_prompts_round_trip_through_chunking_processing_and_assembly(echo_pipeline, rows, ascii_only):
    from pydantic import ValidationError

    from newsgen.schemas import PromptRequest

    body = b""
    for request_id, prompt in rows:
        has_surrogate = any("\ud800" <= ch <= "\udfff" for ch in f"{request_id}{prompt}")
        text = json.dumps(
            {"id": request_id, "task": "headline", "prompt": prompt}, ensure_ascii=ascii_only or has_surrogate
        )
        body += text.encode() + b"\n"
    echo_pipeline.handlers.settings.batch_chunk_lines = 3
    out = echo_pipeline.run("property.jsonl", body)
    results, errors = out["summary"]["results"], out["summary"]["errors"]
    assert out["summary"]["status"] == ("complete" if not errors else "partial" if results else "failed")
    assert out["summary"]["lines"] == len(rows) == results + errors
    assert [e["line"] for e in out["lines"]] == list(range(1, len(rows) + 1))
    for (request_id, prompt), entry in zip(rows, out["lines"], strict=False):
        try:
            PromptRequest(prompt=prompt)
            valid = True
        except ValidationError:
            valid = False
        assert entry["id"] == request_id and ("result" in entry) == valid, (prompt, entry)
        if valid:
            assert entry["result"]["results"][0]["text"] == prompt + " · echo"


def test_a_console_folder_under_batch_in_is_not_a_job(echo_pipeline, s3):
    s3.put_object(Bucket=echo_pipeline.bucket, Key="batch/in/reports/", Body=b"")
    assert echo_pipeline.s3_trigger.poll_once() == 1
    assert "Contents" not in s3.list_objects_v2(Bucket=echo_pipeline.bucket, Prefix="batch/out/")
