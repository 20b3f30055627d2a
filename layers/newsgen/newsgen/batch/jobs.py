"""Batch jobs in S3: dispatch an upload into chunk messages, process a chunk, record a dead chunk, assemble.

Every upload gets an answer at batch/out/<name>/summary.json: `running` once dispatched, then `complete`
(no line failed), `partial` (some lines have results, some errors: their own, or their chunk's, which ended in
the dead-letter queue) or `failed` (no line has a result, or the upload is no job: with the reason). Writes to
batch/out/<name>/ happen under a per-name lock (an S3 object created with If-None-Match) and only by the job
that owns the name: the newest upload, by S3's event sequencer. A superseded run's late workers therefore
never write into the newer job's output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from newsgen.batch import inputs
from newsgen.batch.framing import json_lines, read_json_lines
from newsgen.batch.inputs import JobFailed, Record
from newsgen.batch.layout import (
    ChunkMessage,
    Upload,
    attempt_key,
    chunk_output_key,
    dead_key,
    dead_prefix,
    job_key,
    job_prefix,
    name_key,
    results_key,
    summary_key,
    unreadable_dead_key,
)
from newsgen.batch.requests import parse_all, process_records, record_cost
from newsgen.errors import BatchJobError, error_body

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
PART_BYTES = 8 * MiB  # results are streamed to S3 in parts of this size (multipart needs >= 5 MiB)
LOCK_WAIT_SECONDS = 120.0
LOCK_STALE_SECONDS = 900.0  # a lock older than the longest Lambda run was left by a crashed one
PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
NOT_FOUND = ("NoSuchKey", "404", "NotFound")


class NameBusy(BatchJobError):
    error_type = "batch_name_busy"


# --- S3 helpers ---------------------------------------------------------------------------------------
def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _get_json(s3, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if _code(exc) in NOT_FOUND:
            return None
        raise


def _put_json(s3, bucket: str, key: str, value: dict, **extra) -> None:
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(value, indent=2).encode(), ContentType="application/json", **extra
    )


def _keys(s3, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from (o["Key"] for o in page.get("Contents", []))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def name_lock(s3, bucket: str, name: str) -> Iterator[None]:
    """Mutual exclusion over batch/out/<name>/ across Lambda invocations: S3 creates an object with
    If-None-Match: * for one caller only. A lock left by a crashed invocation expires."""
    key = name_key(name, "lock")
    give_up = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=_now().encode(), IfNoneMatch="*")
            break
        except ClientError as exc:
            if _code(exc) not in PRECONDITION:
                raise
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            if time.time() - head["LastModified"].timestamp() > LOCK_STALE_SECONDS:
                s3.delete_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])
                continue
        except ClientError as exc:
            if _code(exc) not in PRECONDITION + NOT_FOUND:
                raise
            continue
        if time.monotonic() > give_up:
            raise NameBusy(f"batch/out/{name}/ stayed locked for {LOCK_WAIT_SECONDS:.0f} s")
        time.sleep(random.uniform(0.05, 0.3))
    try:
        yield
    finally:
        s3.delete_object(Bucket=bucket, Key=key)


def _owner(s3, bucket: str, name: str) -> dict | None:
    return _get_json(s3, bucket, name_key(name, "json"))


def _claim(s3, upload: Upload) -> bool:
    """Under the name lock: make this upload's job the owner of its output, unless a newer upload owns it."""
    owner = _owner(s3, upload.bucket, upload.name)
    if owner and owner["job"] != upload.job and int(owner["order"]) > upload.order:
        return False
    _put_json(
        s3,
        upload.bucket,
        name_key(upload.name, "json"),
        {"job": upload.job, "order": str(upload.order), "key": upload.key},
    )
    return True


def _summary(upload: Upload, status: str, **fields) -> dict:
    return {
        "status": status,
        "job": upload.job,
        "input": upload.model_dump(),
        **fields,
        "synthetic": True,
        "updated_at": _now(),
    }


def _start_output(s3, upload: Upload, summary: dict) -> bool:
    """Claim batch/out/<name>/ for this upload and write its first summary; the previous upload's results
    go, since they answer a file that was replaced. False when a newer upload owns the name."""
    with name_lock(s3, upload.bucket, upload.name):
        if not _claim(s3, upload):
            logger.info("superseded before dispatch", extra={"key": upload.key, "job": upload.job})
            return False
        s3.delete_object(Bucket=upload.bucket, Key=results_key(upload.name))
        _put_json(s3, upload.bucket, summary_key(upload.name), summary)
        return True


def fail(s3, upload: Upload, error_type: str, message: str) -> dict | None:
    """Answer an upload that cannot be processed: a `failed` summary that says why."""
    summary = _summary(upload, "failed", error_type=error_type, reason=message, finished_at=_now())
    return summary if _start_output(s3, upload, summary) else None


# --- dispatch -----------------------------------------------------------------------------------------
def send_chunks(sqs, queue_url: str, messages: list[ChunkMessage]) -> None:
    for start in range(0, len(messages), 10):
        entries = [{"Id": str(m.chunk), "MessageBody": m.model_dump_json()} for m in messages[start : start + 10]]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        if failed:
            raise RuntimeError(f"SQS refused {len(failed)} chunk messages: {failed[0]}")


def _open(s3, upload: Upload, **range_) -> Iterator[bytes] | None:
    """The upload's bytes as it was when the event fired; None if it was replaced since (a newer event
    answers for it). A deleted input raises JobFailed."""
    conditions = {"IfMatch": upload.etag} if upload.etag else {}
    try:
        body = s3.get_object(Bucket=upload.bucket, Key=upload.key, **conditions, **range_)["Body"]
    except ClientError as exc:
        if _code(exc) in PRECONDITION:
            return None
        if _code(exc) in NOT_FOUND:
            raise JobFailed("input_deleted", "the input file was deleted before the job could read it") from None
        raise
    return body.iter_chunks(inputs.READ_CHUNK_BYTES)


def plan(chunks: Iterator[bytes], fmt: str, chunk_lines: int, chunk_tokens: int) -> tuple[list[str] | None, list[dict]]:
    """Stream the file once: check it, count its records, and cut it into chunks of at most chunk_lines
    records and chunk_tokens tokens of generation. Returns (CSV columns, chunk ranges)."""
    first = next(chunks, b"")
    inputs.check_start(first)
    stream = inputs.lines(_capped(_chain(first, chunks)))
    columns = inputs.csv_header(next(stream, None)) if fmt == "csv" else None
    ranges: list[dict] = []
    count = cost = 0
    for record in inputs.records(stream, fmt, columns):
        count += 1
        if count > inputs.MAX_RECORDS:
            raise JobFailed("too_many_lines", f"more than {inputs.MAX_RECORDS:,} lines; split the file")
        this = record_cost(record)
        current = ranges[-1] if ranges else None
        if current is None or current["records"] >= chunk_lines or cost + this > chunk_tokens:
            ranges.append({"start": record.start, "end": record.end, "first_line": record.line, "records": 0})
            current, cost = ranges[-1], 0
        current["end"], current["records"], cost = record.end, current["records"] + 1, cost + this
    return columns, ranges


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _capped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    read = 0
    for chunk in chunks:
        read += len(chunk)
        if read > inputs.MAX_INPUT_BYTES:
            raise JobFailed("too_large", f"the file is over the cap of {inputs.MAX_INPUT_BYTES:,} bytes")
        yield chunk


def dispatch(
    s3, upload: Upload, send: Callable[[list[ChunkMessage]], None], *, chunk_lines: int, chunk_tokens: int
) -> dict | None:
    """Plan the upload's job and send its chunk messages; returns its first summary (None if superseded)."""
    started = time.time()
    try:
        if upload.format is None:
            raise JobFailed("not_a_batch_input", "not a batch input: name it batch/in/<name>.jsonl or .csv")
        if upload.size is not None and upload.size > inputs.MAX_INPUT_BYTES:
            raise JobFailed(
                "too_large", f"the file is {upload.size:,} bytes, over the cap of {inputs.MAX_INPUT_BYTES:,}"
            )
        chunks = _open(s3, upload)
        if chunks is None:
            logger.info("input replaced before dispatch", extra={"key": upload.key})
            return None
        columns, ranges = plan(chunks, upload.format, chunk_lines, chunk_tokens)
    except JobFailed as exc:
        return fail(s3, upload, exc.reason, exc.message)
    job = {
        "upload": upload.model_dump(),
        "format": upload.format,
        "columns": columns,
        "lines": sum(r["records"] for r in ranges),
        "chunks": len(ranges),
        "started_at": _now(),
        "started": started,
    }
    _put_json(s3, upload.bucket, job_key(upload.job), job)
    summary = _summary(upload, "running", lines=job["lines"], chunks=job["chunks"], started_at=job["started_at"])
    if not _start_output(s3, upload, summary):
        return None
    messages = [
        ChunkMessage(
            bucket=upload.bucket,
            job=upload.job,
            input_key=upload.key,
            etag=upload.etag,
            format=upload.format,
            columns=columns,
            chunk=i,
            chunks=len(ranges),
            **r,
        )
        for i, r in enumerate(ranges)
    ]
    if not messages:
        return assemble_if_complete(s3, upload.bucket, upload.job)
    send(messages)
    return summary


# --- chunks -------------------------------------------------------------------------------------------
def _upload_of(message: ChunkMessage) -> Upload:
    return Upload(bucket=message.bucket, key=message.input_key, etag=message.etag)


def read_chunk(s3, message: ChunkMessage) -> list[Record] | None:
    """The chunk's records, re-read from the upload's byte range; None when the upload was replaced."""
    chunks = _open(s3, _upload_of(message), Range=f"bytes={message.start}-{message.end - 1}")
    if chunks is None:
        return None
    stream = inputs.lines(chunks, first_line=message.first_line, offset=message.start)
    found = list(inputs.records(stream, message.format, message.columns))
    if len(found) != message.records:
        raise BatchJobError(
            f"chunk {message.chunk} has {len(found)} records where the dispatcher counted {message.records}"
        )
    return found


def _chunk_records(s3, message: ChunkMessage) -> list[Record] | None:
    """read_chunk, answering the job as failed when its input was deleted meanwhile."""
    try:
        return read_chunk(s3, message)
    except JobFailed as exc:
        job = _get_json(s3, message.bucket, job_key(message.job))
        if job:
            upload = Upload(**job["upload"])
            with name_lock(s3, upload.bucket, upload.name):
                if (_owner(s3, upload.bucket, upload.name) or {}).get("job") == upload.job:
                    _put_json(
                        s3,
                        upload.bucket,
                        summary_key(upload.name),
                        _summary(upload, "failed", error_type=exc.reason, reason=exc.message, finished_at=_now()),
                    )
        return None


def process_chunk(s3, service, message: ChunkMessage, deadline: float | None = None) -> dict | None:
    """Generate one chunk's lines; returns the job's summary if this chunk completed the job."""
    records = _chunk_records(s3, message)
    if records is None:
        logger.info("chunk of a replaced or deleted input dropped", extra={"job": message.job, "chunk": message.chunk})
        return None
    entries = process_records(service, records, deadline)
    s3.put_object(Bucket=message.bucket, Key=chunk_output_key(message.job, message.chunk), Body=json_lines(entries))
    s3.delete_object(Bucket=message.bucket, Key=dead_key(message.job, message.chunk))  # it was redriven, if there
    return assemble_if_complete(s3, message.bucket, message.job)


def note_attempt(s3, message: ChunkMessage, exc: BaseException, receive_count: int) -> None:
    """Keep why an attempt failed, so that a chunk that ends in the dead-letter queue says why."""
    reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    _put_json(
        s3,
        message.bucket,
        attempt_key(message.job, message.chunk),
        {
            "reason": reason[:1000],
            "error_type": getattr(exc, "error_type", "internal_error"),
            "attempts": receive_count,
            "at": _now(),
        },
    )


def record_dead_letter(s3, body: str, message_id: str, bucket: str) -> dict | None:
    """A chunk that failed every attempt: its lines get an error that says why (lines invalid on their own
    keep their own error), the message is kept for redrive, and the job is assembled: `partial`, or `failed`
    when no line has a result."""
    try:
        message = ChunkMessage.model_validate_json(body)
    except ValidationError:
        _put_json(
            s3, bucket, unreadable_dead_key(message_id), {"message_id": message_id, "body": body[:262144], "at": _now()}
        )
        logger.error("dead-letter message is not a chunk message; kept", extra={"message_id": message_id})
        return None
    records = _chunk_records(s3, message)
    if records is None:
        return None
    attempt = _get_json(s3, message.bucket, attempt_key(message.job, message.chunk)) or {}
    reason = attempt.get("reason", "the worker stopped without reporting (crash, out of memory or timeout)")
    entries, valid = parse_all(records)
    for index, line in valid:
        entries[index] = {
            "id": line.id,
            "line": records[index].line,
            "error": error_body(
                f"not generated: this line's chunk failed every attempt ({reason}); "
                "fix the cause, then redrive the job's dead chunks",
                "chunk_failed",
            ),
        }
    s3.put_object(Bucket=message.bucket, Key=chunk_output_key(message.job, message.chunk), Body=json_lines(entries))
    s3.put_object(
        Bucket=message.bucket, Key=dead_key(message.job, message.chunk), Body=message.model_dump_json().encode()
    )
    return assemble_if_complete(s3, message.bucket, message.job)


def redrive(s3, bucket: str, send: Callable[[list[ChunkMessage]], None], job: str | None = None) -> int:
    """Send the dead chunks (of one job, or all) back to the chunk queue; returns how many."""
    messages = []
    for key in _keys(s3, bucket, dead_prefix(job)):
        if "/_unreadable/" not in key:
            messages.append(ChunkMessage.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    if messages:
        send(messages)
    return len(messages)


# --- assembly -----------------------------------------------------------------------------------------
class _Results:
    """batch/out/<name>/results.jsonl written as it is read: one PUT when small, a multipart upload of
    PART_BYTES parts otherwise, so assembly holds one part in memory whatever the job's size."""

    def __init__(self, s3, bucket: str, key: str):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.buffer, self.upload_id = bytearray(), None
        self.parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_BYTES:
            self._part()

    def _part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/x-ndjson"
            )["UploadId"]
        number = len(self.parts) + 1
        etag = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=bytes(self.buffer)
        )["ETag"]
        self.parts.append({"PartNumber": number, "ETag": etag})
        self.buffer.clear()

    def close(self) -> None:
        if self.upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), ContentType="application/x-ndjson"
            )
            return
        if self.buffer:
            self._part()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


class _Tally:
    def __init__(self):
        self.results = self.skipped = 0
        self.errors: Counter = Counter()
        self.failed: list[list[int]] = []  # line ranges whose chunk ended in the dead-letter queue
        self.versions: set[str] = set()

    def add(self, entry: dict) -> None:
        if "result" in entry:
            self.results += 1
            model = entry["result"].get("model")
            for ref in model if isinstance(model, list) else [model] if model else []:
                self.versions.add(f"{ref['task']}:{ref['version']}")
        elif "error" in entry:
            self.errors[entry["error"]["error_type"]] += 1
            if entry["error"]["error_type"] == "chunk_failed":
                if self.failed and self.failed[-1][1] + 1 >= entry["line"]:
                    self.failed[-1][1] = entry["line"]
                else:
                    self.failed.append([entry["line"], entry["line"]])
        else:
            self.skipped += 1

    def status(self) -> str:
        """complete: no line failed (blank lines are skipped, not failed); partial: some lines have results and
        some errors; failed: lines failed and none has a result."""
        if not self.errors:
            return "complete"
        return "partial" if self.results else "failed"

    def failure(self) -> dict:
        """A failed job's error_type and reason, as every failed summary has them."""
        if self.status() != "failed":
            return {}
        causes = ", ".join(f"{kind}: {count:,}" for kind, count in self.errors.most_common())
        total = sum(self.errors.values())
        return {"error_type": "no_results", "reason": f"no line has a result: {total:,} failed ({causes})"}


def assemble_if_complete(s3, bucket: str, job: str) -> dict | None:
    """If every chunk has its output, write the job's results and summary (idempotent); None otherwise, or
    when a newer upload of the same name owns the output."""
    meta = _get_json(s3, bucket, job_key(job))
    if meta is None or sum(1 for _ in _keys(s3, bucket, job_prefix(job) + "out/")) < meta["chunks"]:
        return None
    upload = Upload(**meta["upload"])
    with name_lock(s3, bucket, upload.name):
        if (_owner(s3, bucket, upload.name) or {}).get("job") != job:
            logger.info("superseded: output left to the newer upload", extra={"job": job, "key": upload.key})
            return None
        tally, results = _Tally(), _Results(s3, bucket, results_key(upload.name))
        try:
            for chunk in range(meta["chunks"]):
                data = s3.get_object(Bucket=bucket, Key=chunk_output_key(job, chunk))["Body"].read()
                for entry in read_json_lines(data):
                    tally.add(entry)
                results.write(data)
            results.close()
        except BaseException:
            results.abort()
            raise
        dead = sum(1 for _ in _keys(s3, bucket, dead_prefix(job)))
        finished = time.time()
        summary = _summary(
            upload,
            tally.status(),
            **tally.failure(),
            results_file=f"s3://{bucket}/{results_key(upload.name)}",
            lines=meta["lines"],
            results=tally.results,
            errors=sum(tally.errors.values()),
            skipped=tally.skipped,
            errors_by_type=dict(tally.errors),
            chunks=meta["chunks"],
            chunks_failed=dead,
            failed_lines=tally.failed,
            model_versions=sorted(tally.versions),
            started_at=meta["started_at"],
            finished_at=_now(),
            duration_s=round(finished - meta["started"], 3),
        )
        _put_json(s3, bucket, summary_key(upload.name), summary)
    return summary
