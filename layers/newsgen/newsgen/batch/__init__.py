"""Batch jobs: a prompts file uploaded to batch/in/<name>.jsonl (or .csv) is answered at
batch/out/<name>/results.jsonl, one line per input record (a result, that line's error, or a skipped blank
line), and batch/out/<name>/summary.json.

The dispatcher (no torch) streams the upload once, cuts it into chunks (byte ranges of the upload, sized by
lines and by the tokens they may generate) and sends one SQS message per chunk. A worker re-reads its byte
range, generates, and writes the chunk's output under the job's work prefix; whichever worker finds every
chunk present assembles the results. A chunk that fails every attempt reaches the dead-letter queue, whose
recorder writes its lines as errors, so the job still ends (`partial`, or `failed` when no line has a
result) and the chunk can be redriven.
"""

from newsgen.batch.inputs import CSV_COLUMNS, MAX_INPUT_BYTES, MAX_LINE_BYTES, MAX_RECORDS, JobFailed
from newsgen.batch.jobs import (
    assemble_if_complete,
    dispatch,
    fail,
    note_attempt,
    process_chunk,
    record_dead_letter,
    redrive,
    send_chunks,
)
from newsgen.batch.layout import IN_PREFIX, OUT_PREFIX, WORK_PREFIX, ChunkMessage, Upload, results_key, summary_key
from newsgen.batch.requests import BatchLine, ChunkTimedOut

__all__ = [
    "CSV_COLUMNS",
    "IN_PREFIX",
    "MAX_INPUT_BYTES",
    "MAX_LINE_BYTES",
    "MAX_RECORDS",
    "OUT_PREFIX",
    "WORK_PREFIX",
    "BatchLine",
    "ChunkMessage",
    "ChunkTimedOut",
    "JobFailed",
    "Upload",
    "assemble_if_complete",
    "dispatch",
    "fail",
    "note_attempt",
    "process_chunk",
    "record_dead_letter",
    "redrive",
    "results_key",
    "send_chunks",
    "summary_key",
]
