"""Where a batch job's files live, and the records that name an upload and a chunk.

    batch/in/<name>                         the upload (<name> ends in .jsonl or .csv; any depth)
    batch/out/<name>/results.jsonl          one line per input record, in order
    batch/out/<name>/summary.json           status running | complete | partial | failed, and the counts
    batch/work/jobs/<job>/job.json          the job: which upload, format, records, chunks
    batch/work/jobs/<job>/out/<chunk>.jsonl each chunk's output lines
    batch/work/jobs/<job>/attempts/<chunk>.json   why the last attempt at a chunk failed
    batch/work/dead/<job>/<chunk>.json      chunks that ended in the dead-letter queue (redrive re-sends them)
    batch/work/names/<hash>.json | .lock    which job owns batch/out/<name>/, and the lock to change it

A job id is derived from the upload (key, etag, version id, sequencer), so each upload is its own job, and a
dispatcher retried for the same upload makes the same job. Outputs are per input name (the whole name,
extension included): `x.jsonl` and `x.csv`, or `a.jsonl` and `a/b.jsonl`, never share a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

from newsgen.batch.inputs import FORMATS

IN_PREFIX = "batch/in/"
OUT_PREFIX = "batch/out/"
WORK_PREFIX = "batch/work/"
MAX_KEY_BYTES = 1024  # S3's limit


def _digest(text: str, size: int = 32) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]


class Upload(BaseModel):
    """One upload of an input file, as the S3 event names it."""

    bucket: str
    key: str
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    size: int | None = None

    @property
    def name(self) -> str:
        return self.key[len(IN_PREFIX) :]

    @property
    def format(self) -> str | None:
        return FORMATS.get(PurePosixPath(self.key).suffix.lower()) if self.key.startswith(IN_PREFIX) else None

    @property
    def job(self) -> str:
        return _digest(json.dumps([self.bucket, self.key, self.etag, self.version_id, self.sequencer]), 24)

    @property
    def order(self) -> int:
        """Later uploads of a key have greater sequencers (hexadecimal values; S3 event notifications)."""
        try:
            return int(self.sequencer or "0", 16)
        except ValueError:
            return 0


class ChunkMessage(BaseModel):
    """The SQS message for one chunk: a byte range of the upload. Keys and offsets only: data stays in S3."""

    bucket: str
    job: str
    input_key: str
    etag: str | None = None
    format: str
    columns: list[str] | None = None  # a CSV's header
    chunk: int = Field(ge=0)
    chunks: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    first_line: int = Field(ge=1)
    records: int = Field(ge=1)


def output_prefix(name: str) -> str:
    """batch/out/<name>/, shortened with a hash of the name where the full name would pass S3's key limit."""
    prefix = f"{OUT_PREFIX}{name}/"
    room = MAX_KEY_BYTES - len("results.jsonl")
    if len(prefix.encode("utf-8", "surrogatepass")) <= room:
        return prefix
    tag = f"~{_digest(name, 16)}/"
    kept = name.encode("utf-8", "surrogatepass")[: room - len(OUT_PREFIX) - len(tag)].decode("utf-8", "ignore")
    return f"{OUT_PREFIX}{kept}{tag}"


def results_key(name: str) -> str:
    return output_prefix(name) + "results.jsonl"


def summary_key(name: str) -> str:
    return output_prefix(name) + "summary.json"


def job_prefix(job: str) -> str:
    return f"{WORK_PREFIX}jobs/{job}/"


def job_key(job: str) -> str:
    return job_prefix(job) + "job.json"


def chunk_output_key(job: str, chunk: int) -> str:
    return f"{job_prefix(job)}out/{chunk:06d}.jsonl"


def attempt_key(job: str, chunk: int) -> str:
    return f"{job_prefix(job)}attempts/{chunk:06d}.json"


def dead_prefix(job: str | None = None) -> str:
    return f"{WORK_PREFIX}dead/" + (f"{job}/" if job else "")


def dead_key(job: str, chunk: int) -> str:
    return f"{dead_prefix(job)}{chunk:06d}.json"


def unreadable_dead_key(message_id: str) -> str:
    return f"{WORK_PREFIX}dead/_unreadable/{_digest(message_id)}.json"


def name_key(name: str, suffix: str) -> str:
    return f"{WORK_PREFIX}names/{_digest(name)}.{suffix}"
