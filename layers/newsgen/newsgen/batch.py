"""Batch jobs: a prompts file dropped at batch/in/<name>.jsonl (or .csv) becomes batch/out/<name>.jsonl, one
output line per input line (a result or that line's error), plus batch/out/<name>.summary.json.

The dispatcher (no torch) splits the file into chunks under the job's work prefix and sends one SQS message
per chunk. Workers process chunks and write each chunk's output under a deterministic key, so a redelivered
message overwrites instead of duplicating; whichever worker finds every chunk present assembles the output.
Everything a job writes stays under batch/out/ (the functions may write nowhere else).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections import Counter
from pathlib import PurePosixPath
from typing import Any, Iterator, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from newsgen.errors import BatchJobError, InvalidLine, NewsgenError
from newsgen.schemas import MAX_PROMPT_CHARS, MAX_RESULTS, GenerationParameters, Strict, _clean_text

IN_PREFIX = "batch/in/"
OUT_PREFIX = "batch/out/"
WORK_PREFIX = "batch/out/_work/"
SUFFIXES = (".jsonl", ".csv")
CSV_COLUMNS = ("id", "task", "prompt", "headline", "n", "parameters")
GROUP_ROWS = 32  # prompts × n per generate call: big enough to batch, small enough for the time budget


class BatchLine(Strict):
    """One request of a batch file."""

    id: str | int | None = None
    task: Literal["headline", "article", "news"]
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    headline: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    n: int = Field(1, ge=1, le=MAX_RESULTS)
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)

    @field_validator("prompt", "headline")
    @classmethod
    def _text(cls, value: str | None, info) -> str | None:
        return _clean_text(value, info.field_name)

    @model_validator(mode="after")
    def _inputs_fit_task(self):
        if self.task == "article" and not (self.headline or "").strip():
            raise ValueError("an article line needs a non-blank 'headline'")
        if self.task != "article" and self.headline is not None:
            raise ValueError(f"a {self.task} line takes 'prompt', not 'headline'")
        if self.task == "article" and self.prompt is not None:
            raise ValueError("an article line takes 'headline', not 'prompt'")
        return self


class ChunkMessage(BaseModel):
    """The SQS message for one chunk. Keys only: the data stays in S3."""

    bucket: str
    job: str
    input_key: str
    chunk: int = Field(ge=0)
    chunks: int = Field(ge=1)


# --- keys ---------------------------------------------------------------------------------------------
def job_name(key: str) -> str:
    """`batch/in/foo.jsonl` → `foo`; anything else is not a batch input."""
    path = PurePosixPath(key)
    if not key.startswith(IN_PREFIX) or path.suffix not in SUFFIXES or not path.stem:
        raise BatchJobError(f"{key} is not a batch input: expected {IN_PREFIX}<name>.jsonl or .csv")
    return str(PurePosixPath(key[len(IN_PREFIX) :]).with_suffix(""))


def work_prefix(job: str) -> str:
    return f"{WORK_PREFIX}{job}/"


def chunk_input_key(job: str, chunk: int) -> str:
    return f"{work_prefix(job)}in/{chunk:06d}.jsonl"


def chunk_output_key(job: str, chunk: int) -> str:
    return f"{work_prefix(job)}out/{chunk:06d}.jsonl"


def output_key(job: str) -> str:
    return f"{OUT_PREFIX}{job}.jsonl"


def summary_key(job: str) -> str:
    return f"{OUT_PREFIX}{job}.summary.json"


# --- dispatch -----------------------------------------------------------------------------------------
def records(data: bytes, suffix: str) -> Iterator[dict]:
    """Input records with their 1-based line numbers. A line that cannot even be decoded still becomes a
    record (with its error), so it appears in the output."""
    if suffix == ".csv":
        text = data.decode("utf-8", errors="replace")
        reader = csv.DictReader(io.StringIO(text))
        unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
        if unknown or "task" not in (reader.fieldnames or []):
            raise BatchJobError(f"CSV columns must be among {', '.join(CSV_COLUMNS)} and include task; found {reader.fieldnames}")
        for row in reader:
            yield {"line": reader.line_num, "fields": {k: v for k, v in row.items() if k is not None and v not in ("", None)}}
        return
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield {"line": number, "raw": raw.decode("utf-8")}
        except UnicodeDecodeError as exc:
            yield {"line": number, "decode_error": f"line is not UTF-8: {exc.reason} at byte {exc.start}"}


def plan_job(s3, bucket: str, key: str, chunk_lines: int) -> tuple[dict, list[ChunkMessage]]:
    """Split an input file into chunk objects and describe the job; returns (job, messages to send)."""
    job = job_name(key)
    started = time.time()
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    chunks: list[list[dict]] = [[]]
    for record in records(data, PurePosixPath(key).suffix):
        if len(chunks[-1]) == chunk_lines:
            chunks.append([])
        chunks[-1].append(record)
    if not chunks[-1]:
        chunks.pop()
    # A new upload of the same name replaces the old job's chunks.
    delete_prefix(s3, bucket, work_prefix(job))
    for index, chunk in enumerate(chunks):
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chunk).encode()
        s3.put_object(Bucket=bucket, Key=chunk_input_key(job, index), Body=body)
    manifest = {
        "job": job,
        "input": f"s3://{bucket}/{key}",
        "lines": sum(len(c) for c in chunks),
        "chunks": len(chunks),
        "chunk_lines": chunk_lines,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "started": started,
    }
    s3.put_object(Bucket=bucket, Key=f"{work_prefix(job)}job.json", Body=json.dumps(manifest).encode())
    if not chunks:
        write_outputs(s3, bucket, job, manifest, [])
    messages = [ChunkMessage(bucket=bucket, job=job, input_key=key, chunk=i, chunks=len(chunks)) for i in range(len(chunks))]
    return manifest, messages


def delete_prefix(s3, bucket: str, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


# --- work ---------------------------------------------------------------------------------------------
def parse_record(record: dict) -> BatchLine:
    """A record → a validated request, or NewsgenError/ValidationError naming what is wrong."""
    if "decode_error" in record:
        raise InvalidLine(record["decode_error"])
    if "fields" in record:
        fields = dict(record["fields"])
        if "parameters" in fields:
            try:
                fields["parameters"] = json.loads(fields["parameters"])
            except json.JSONDecodeError as exc:
                raise InvalidLine(f"parameters column is not JSON: {exc.msg}") from None
        return BatchLine.model_validate(fields)
    try:
        data = json.loads(record["raw"])
    except json.JSONDecodeError as exc:
        raise InvalidLine(f"line is not JSON: {exc.msg} at column {exc.colno}") from None
    return BatchLine.model_validate(data)


def error_entry(exc: Exception) -> dict:
    if isinstance(exc, ValidationError):
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = problems[0]
        where = ".".join(first["loc"]) or "line"
        return {"error": f"{where}: {first['msg']}", "error_type": "validation_error", "details": problems}
    if isinstance(exc, NewsgenError):
        return exc.to_dict()
    return {"error": str(exc), "error_type": "internal_error"}


def request_id(record: dict) -> Any:
    """The line's id when it can be read, so that a failed line is still matched to its input."""
    if "fields" in record:
        return record["fields"].get("id")
    try:
        value = json.loads(record.get("raw", ""))
        return value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), (str, int)) else None
    except (json.JSONDecodeError, TypeError):
        return None


def process_records(service, records_: list[dict], deadline: float | None) -> list[dict]:
    """One output entry per record, in order. Lines that share task, n and parameters (and no seed) are
    generated together; a seeded line runs alone so that its seed reproduces its text."""
    outputs: list[dict | None] = [None] * len(records_)
    groups: dict[str, list[tuple[int, BatchLine]]] = {}
    for index, record in enumerate(records_):
        base = {"id": request_id(record), "line": record["line"]}
        try:
            line = parse_record(record)
        except (ValidationError, NewsgenError) as exc:
            outputs[index] = {**base, "error": error_entry(exc)}
            continue
        key = json.dumps([line.task, line.n, line.parameters.model_dump()], sort_keys=True)
        if line.parameters.seed is not None:
            key += f"#{index}"
        groups.setdefault(key, []).append((index, line))
    for members in groups.values():
        per_call = max(1, GROUP_ROWS // members[0][1].n)
        for start in range(0, len(members), per_call):
            _generate_group(service, members[start : start + per_call], records_, outputs, deadline)
    return outputs  # type: ignore[return-value]


def _generate_group(service, members, records_, outputs, deadline) -> None:
    from newsgen.errors import ModelUnavailable

    task, n, params = members[0][1].task, members[0][1].n, members[0][1].parameters
    inputs = [line.headline if task == "article" else line.prompt for _, line in members]
    run = {"headline": service.headlines_many, "article": service.articles_many, "news": service.news_many}[task]
    try:
        responses = run(inputs, n, params, deadline)
    except ModelUnavailable:
        raise  # the whole chunk is retried later (and lands in the DLQ if it never recovers)
    except NewsgenError as exc:
        if len(members) > 1:  # one line's problem (a prompt too long for the context) must not fail its neighbours
            for member in members:
                _generate_group(service, [member], records_, outputs, deadline)
            return
        index, line = members[0]
        outputs[index] = {"id": line.id, "line": records_[index]["line"], "error": error_entry(exc)}
        return
    for (index, line), response in zip(members, responses):
        outputs[index] = {"id": line.id, "line": records_[index]["line"], "result": response.model_dump(mode="json", exclude_none=True)}


def process_chunk(s3, service, message: ChunkMessage, deadline: float | None = None) -> dict | None:
    """Process one chunk; returns the job summary if this call completed the job."""
    raw = s3.get_object(Bucket=message.bucket, Key=chunk_input_key(message.job, message.chunk))["Body"].read()
    chunk_records = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    outputs = process_records(service, chunk_records, deadline)
    body = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in outputs).encode()
    s3.put_object(Bucket=message.bucket, Key=chunk_output_key(message.job, message.chunk), Body=body)
    return try_assemble(s3, message.bucket, message.job, message.chunks)


def try_assemble(s3, bucket: str, job: str, chunks: int) -> dict | None:
    """If every chunk's output exists, write the job's output and summary (idempotent)."""
    prefix = f"{work_prefix(job)}out/"
    present = {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }
    if len(present) < chunks:
        return None
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{work_prefix(job)}job.json")["Body"].read())
    entries = []
    for index in range(chunks):
        raw = s3.get_object(Bucket=bucket, Key=chunk_output_key(job, index))["Body"].read().decode()
        entries.extend(json.loads(line) for line in raw.splitlines() if line.strip())
    return write_outputs(s3, bucket, job, manifest, entries)


def write_outputs(s3, bucket: str, job: str, manifest: dict, entries: list[dict]) -> dict:
    body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode()
    s3.put_object(Bucket=bucket, Key=output_key(job), Body=body, ContentType="application/x-ndjson")
    errors = Counter(e["error"]["error_type"] for e in entries if "error" in e)
    versions = sorted(
        {f"{m['task']}:{m['version']}" for e in entries if "result" in e for m in _models(e["result"])}
    )
    finished = time.time()
    summary = {
        "job": job,
        "input": manifest["input"],
        "output": f"s3://{bucket}/{output_key(job)}",
        "lines": manifest["lines"],
        "results": sum(1 for e in entries if "result" in e),
        "errors": sum(errors.values()),
        "errors_by_type": dict(errors),
        "chunks": manifest["chunks"],
        "model_versions": versions,
        "started_at": manifest["started_at"],
        "finished_at": dt.datetime.fromtimestamp(finished, dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(finished - manifest["started"], 3),
        "synthetic": True,
    }
    s3.put_object(Bucket=bucket, Key=summary_key(job), Body=json.dumps(summary, indent=2).encode(), ContentType="application/json")
    return summary


def _models(result: dict) -> list[dict]:
    model = result.get("model")
    return model if isinstance(model, list) else [model] if model else []
