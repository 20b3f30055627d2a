"""Reading batch inputs as a stream of records, whatever the bytes.

A record is one request: a JSONL line, or a CSV row after the header (a quoted field may span lines). Each
record knows its first line number and its byte range in the file, so the dispatcher can hand a worker a
byte range of the original upload, and the worker reads exactly the records the dispatcher counted. No
record can hurt its neighbours: a line that is not UTF-8, over the per-line cap, or not a valid CSV row
becomes a record with a `problem`, which turns into that line's error.

Memory stays bounded: the file is read in chunks, and a line over the cap is skipped, not held.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from newsgen.errors import BatchJobError

MiB = 1024 * 1024
MAX_INPUT_BYTES = 256 * MiB
MAX_RECORDS = 200_000
MAX_LINE_BYTES = 256 * 1024  # a request is well under 4 KiB; this leaves room for long ids and parameters
READ_CHUNK_BYTES = 1 * MiB
CSV_COLUMNS = (
    "id",
    "task",
    "prompt",
    "headline",
    "text",
    "n",
    "parameters",
    "headline_parameters",
    "article_parameters",
)
FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

csv.field_size_limit(MAX_LINE_BYTES)


class JobFailed(BatchJobError):
    """The upload as a whole cannot be a batch job; the summary says why (`reason` is a stable code)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Line:
    number: int
    start: int  # byte offset of the line in the file
    end: int  # byte offset after its newline
    data: bytes  # without the newline; empty when over the cap
    over_cap: bool = False


@dataclass
class Record:
    line: int
    start: int
    end: int
    raw: str | None = None  # a JSONL line
    fields: dict[str, str] | None = None  # a CSV row
    problem: str | None = None  # why it cannot be read: becomes this line's error
    blank: bool = False


def lines(chunks: Iterable[bytes], *, first_line: int = 1, offset: int = 0) -> Iterator[Line]:
    """Split a byte stream on b"\\n" only (not on CR, U+2028 or any other character). A line over
    MAX_LINE_BYTES is yielded with empty data and its true extent, without being held in memory."""
    number, start, size, skipping = first_line, offset, 0, False
    buffer = bytearray()
    for chunk in chunks:
        position = 0
        while position < len(chunk):
            newline = chunk.find(b"\n", position)
            piece = chunk[position : newline if newline >= 0 else len(chunk)]
            size += len(piece)
            if not skipping:
                if len(buffer) + len(piece) > MAX_LINE_BYTES:
                    skipping = True
                    buffer.clear()
                else:
                    buffer += piece
            if newline < 0:
                break
            yield Line(number, start, start + size + 1, bytes(buffer), skipping)
            number, start, size, skipping = number + 1, start + size + 1, 0, False
            buffer.clear()
            position = newline + 1
    if size:
        yield Line(number, start, start + size, bytes(buffer), skipping)


def _too_long(line: Line) -> str:
    return f"line is {line.end - line.start:,} bytes, over the per-line cap of {MAX_LINE_BYTES:,}"


def _decode(data: bytes) -> tuple[str | None, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"line is not UTF-8: {exc.reason} at byte {exc.start}"


def check_start(head: bytes) -> None:
    if head.startswith(UTF16_BOMS):
        raise JobFailed("encoding", 'the file is UTF-16; save it as UTF-8 ("CSV UTF-8" in a spreadsheet)')


def jsonl_records(stream: Iterator[Line]) -> Iterator[Record]:
    for line in stream:
        data = line.data[len(UTF8_BOM) :] if line.start == 0 and line.data.startswith(UTF8_BOM) else line.data
        record = Record(line.number, line.start, line.end)
        if line.over_cap:
            record.problem = _too_long(line)
        elif not data.strip():
            record.blank = True
        else:
            record.raw, record.problem = _decode(data)
        yield record


def csv_header(line: Line | None) -> list[str]:
    """The column names of a CSV's first line, checked: a header is required, with a task column."""
    if line is None or not line.data.strip(UTF8_BOM + b" \t\r"):
        raise JobFailed(
            "no_header",
            f"the CSV is empty: its first line must name the columns ({', '.join(CSV_COLUMNS)}; task is required)",
        )
    if line.over_cap:
        raise JobFailed("no_header", "the CSV's first line is over the per-line cap; it must name the columns")
    text, problem = _decode(line.data.removeprefix(UTF8_BOM))
    if problem:
        raise JobFailed("encoding", f"the CSV header {problem.removeprefix('line ')}; save the file as UTF-8")
    try:
        names = next(csv.reader([text or ""]))
    except (csv.Error, StopIteration):
        raise JobFailed("no_header", "the CSV's first line is not a header row") from None
    columns = [name.strip().lower() for name in names]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if "task" not in columns:
        raise JobFailed(
            "no_header",
            "the CSV's first line must name the columns, including task "
            f"(allowed: {', '.join(CSV_COLUMNS)}); found {names[:8]}",
        )
    if unknown:
        raise JobFailed("unknown_columns", f"unknown CSV column(s) {unknown[:8]}; allowed: {', '.join(CSV_COLUMNS)}")
    if len(set(columns)) != len(columns):
        raise JobFailed("unknown_columns", f"a CSV column is named twice: {columns}")
    return columns


class _Feed:
    """Physical lines for csv.reader, remembering which ones the current record used (and their bytes)."""

    def __init__(self, stream: Iterator[Line]):
        self.stream = stream
        self.used: list[Line] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.stream)
        self.used.append(line)
        if line.over_cap or sum(u.end - u.start for u in self.used) > MAX_LINE_BYTES:
            # Ends the record: csv.reader raises, and the record is reported as too long.
            raise csv.Error(
                _too_long(line) if line.over_cap else f"row is over the per-line cap of {MAX_LINE_BYTES:,} bytes"
            )
        return line.data.decode("utf-8", "surrogateescape") + "\n"


def csv_records(stream: Iterator[Line], columns: list[str]) -> Iterator[Record]:
    """Rows after the header; a quoted field may span lines (spreadsheets write them). A row that cannot be
    parsed, or holds bytes that are not UTF-8, is a record with a problem; the next row starts afresh."""
    feed = _Feed(stream)
    reader = csv.reader(feed)
    while True:
        feed.used = []
        try:
            row, problem = next(reader), None
        except StopIteration:
            return
        except csv.Error as exc:
            row, problem = None, f"not a valid CSV row: {exc}"
        if not feed.used:
            return
        first, last = feed.used[0], feed.used[-1]
        record = Record(first.number, first.start, last.end)
        if row is None:
            record.problem = problem
        elif not any(value.strip() for value in row):
            record.blank = True
        elif any("\udc80" <= ch <= "\udcff" for value in row for ch in value):
            record.problem = "row is not UTF-8; save the file as UTF-8"
        elif len(row) > len(columns):
            record.problem = f"row has {len(row)} values but the header names {len(columns)} columns"
        else:
            record.fields = {name: value for name, value in zip(columns, row, strict=False) if value != ""}
        yield record


def records(stream: Iterator[Line], fmt: str, columns: list[str] | None) -> Iterator[Record]:
    return jsonl_records(stream) if fmt == "jsonl" else csv_records(stream, columns or [])
