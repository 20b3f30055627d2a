"""Data preparation: news corpora (CSV, JSONL or Parquet) → train.jsonl, validation.jsonl and report.json.

The input's columns are mapped to ours (`title`, `content` and optionally `publication`; the All-the-News
names by default, `--columns title=headline,content=body` otherwise). The format comes from the file's
extension or `--format`. Reads in chunks so memory stays flat on multi-GB inputs. Rules, each counted in the
report:
  1. drop rows whose title is empty or null
  2. remove the publication's name from the title (suffix or prefix with a separator): the row's own
     publication, or any of the names given with `--publication-names`; skipped (and the report says so)
     when the input has no publication column and no names are given
  3. drop headlines with fewer than `min_title_words` words
  4. drop duplicate headlines (whitespace- and case-normalised)
  5. keep the first `max_article_words` words of the article (runs of spaces collapsed); rows without
     article text stay for the headline set and are left out of the article set at training time
  6. deterministic train/validation split by a hash of the normalised title and the seed
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

REQUIRED_COLUMNS = ("title", "content")
OPTIONAL_COLUMNS = ("publication",)
OUR_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
ALL_THE_NEWS = ",id,title,publication,author,date,year,month,url,content"
SEPARATOR = r"\s*(?:-|—|–|\||:)\s*"
# Forms of outlet names that the dataset's `publication` column spells differently from the titles.
KNOWN_NAMES = {
    "new york times": ["The New York Times", "NYTimes.com", "NYT"],
    "washington post": ["The Washington Post"],
    "guardian": ["The Guardian"],
    "atlantic": ["The Atlantic"],
    "hill": ["The Hill"],
    "new york post": ["New York Post", "NY Post"],
    "breitbart": ["Breitbart News", "Breitbart"],
    "cnn": ["CNN.com", "CNN Politics", "CNN"],
    "npr": ["NPR"],
    "reuters": ["Reuters"],
    "vox": ["Vox"],
    "business insider": ["Business Insider"],
    "buzzfeed news": ["BuzzFeed News", "BuzzFeed"],
    "fox news": ["Fox News"],
    "national review": ["National Review"],
    "talking points memo": ["Talking Points Memo", "TPM"],
}
WHITESPACE = re.compile(r"\s+")


class PrepareError(Exception):
    """Bad input, named for the user (a file, a column, the rule that removed every row)."""


@dataclass
class Report:
    inputs: list[str]
    formats: list[str] = field(default_factory=list)  # per input
    columns: dict[str, str | None] = field(default_factory=dict)  # ours -> the input's (None: in no input)
    publication_rule: str = ""  # how rule 2 ran: from a column, from --publication-names, or skipped
    rows_in: int = 0
    removed: dict[str, int] = field(default_factory=lambda: {"empty_title": 0, "short_title": 0, "duplicate_title": 0})
    titles_with_publication_removed: int = 0
    rows_without_article: int = 0
    rows_out: int = 0
    train_rows: int = 0
    validation_rows: int = 0
    settings: dict = field(default_factory=dict)
    fingerprint: str = ""


def publication_names(publication: str) -> list[str]:
    publication = WHITESPACE.sub(" ", publication or "").strip()
    if not publication:
        return []
    key = re.sub(r"^the\s+", "", publication.lower())
    names = {publication, f"The {publication}", *KNOWN_NAMES.get(key, [])}
    return sorted(names, key=len, reverse=True)  # longest first: "The New York Times" before "New York Times"


def names_pattern(names: list[str]) -> re.Pattern | None:
    """Any of the names as a title's prefix or suffix with a separator (None: no names)."""
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))
    return re.compile(rf"^(?:{alternatives}){SEPARATOR}|{SEPARATOR}(?:{alternatives})\s*$", re.IGNORECASE)


@dataclass
class TitleCleaner:
    """Compiled per publication: strip_title is called once per row."""

    _patterns: dict[str, re.Pattern | None] = field(default_factory=dict)

    def pattern(self, publication: str) -> re.Pattern | None:
        if publication not in self._patterns:
            self._patterns[publication] = names_pattern(publication_names(publication))
        return self._patterns[publication]

    def strip(self, title: str, publication: str) -> str:
        pattern = self.pattern(publication)
        return pattern.sub("", title).strip() if pattern else title


@dataclass
class NamesCleaner(TitleCleaner):
    """Strips any of a fixed list of publication names (`--publication-names`), whatever the row's column."""

    names: tuple[str, ...] = ()

    def pattern(self, publication: str) -> re.Pattern | None:
        if "" not in self._patterns:
            self._patterns[""] = names_pattern([form for name in self.names for form in publication_names(name)])
        return self._patterns[""]


def parse_columns(text: str | None) -> dict[str, str]:
    """`--columns title=headline,content=body[,publication=source]` → {"title": "headline", ...}."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        ours, sep, theirs = (p.strip() for p in part.partition("="))
        if not sep or not ours or not theirs:
            raise PrepareError(
                f"--columns: expected ours=theirs pairs separated by commas (title=headline), got {part!r}"
            )
        if ours not in OUR_COLUMNS:
            raise PrepareError(f"--columns: unknown column {ours!r} of ours; ours are {', '.join(OUR_COLUMNS)}")
        if ours in mapping:
            raise PrepareError(f"--columns: {ours!r} is mapped twice")
        mapping[ours] = theirs
    return mapping


def parse_names(text: str | None) -> tuple[str, ...]:
    """`--publication-names "The Harbor Ledger,Valley Courier"` → the names, blanks dropped."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def format_of(path: Path, given: str | None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise PrepareError(f"--format must be one of {', '.join(FORMATS)}, not {given!r}")
        return given
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in EXTENSIONS:
            return EXTENSIONS[suffix]
    raise PrepareError(
        f"{path}: cannot tell the format from the extension {''.join(suffixes) or '(none)'}; "
        f"name it .csv, .jsonl or .parquet, or pass --format {'/'.join(FORMATS)}"
    )


def normalise_title(title: str) -> str:
    return WHITESPACE.sub(" ", title).strip().casefold()


def first_words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])


def in_validation(normalised_title: str, seed: int, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{normalised_title}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def read_chunks(path: Path, chunk_rows: int, fmt: str = "csv", columns: dict[str, str] | None = None):
    """DataFrames of `chunk_rows` rows with our column names (title, content, publication when there is one),
    every value a string."""
    if not path.is_file():
        raise PrepareError(f"{path}: no such file")
    mapping = {ours: (columns or {}).get(ours, ours) for ours in OUR_COLUMNS}
    readers = {"csv": _csv_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks}
    for chunk in readers[fmt](path, chunk_rows):
        yield _our_columns(path, chunk, mapping, explicit=columns or {})


def _our_columns(path: Path, chunk: pd.DataFrame, mapping: dict[str, str], explicit: dict[str, str]) -> pd.DataFrame:
    found = [str(c) for c in chunk.columns]
    unknown = [f"{theirs!r} (for {ours})" for ours, theirs in explicit.items() if theirs not in found]
    if unknown:
        raise PrepareError(f"{path}: unknown column {', '.join(unknown)}; the file has {', '.join(found)}")
    missing = [ours for ours in REQUIRED_COLUMNS if mapping[ours] not in found]
    if missing:
        raise PrepareError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(found)}. Map yours with "
            f"--columns title=...,content=...[,publication=...] (default: the All-the-News names, {ALL_THE_NEWS})"
        )
    present = {ours: theirs for ours, theirs in mapping.items() if theirs in found}
    selected = chunk[list(present.values())]
    selected.columns = list(present)
    return selected.fillna("").astype(str)


def _csv_chunks(path: Path, chunk_rows: int):
    try:
        yield from pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_rows,
            encoding="utf-8",
            encoding_errors="replace",  # a stray byte costs one character, not the file
            on_bad_lines="warn",
        )
    except pd.errors.EmptyDataError:
        raise PrepareError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, OSError) as exc:
        raise PrepareError(f"{path}: cannot be read as CSV: {exc}") from None


def _jsonl_chunks(path: Path, chunk_rows: int):
    """One JSON object per line; blank lines are skipped; a value that is not a string is written as JSON
    would be read back (numbers as digits, null as empty)."""
    records: list[dict] = []
    any_line = False
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            any_line = True
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PrepareError(f"{path}:{number}: cannot be read as JSONL: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise PrepareError(
                    f"{path}:{number}: cannot be read as JSONL: a {type(record).__name__}, not an object"
                )
            records.append(record)
            if len(records) == chunk_rows:
                yield _frame(records)
                records = []
    if not any_line:
        raise PrepareError(f"{path}: the file is empty")
    if records:
        yield _frame(records)


def _frame(records: list[dict]) -> pd.DataFrame:
    def text(value) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return pd.DataFrame([{str(k): text(v) for k, v in r.items()} for r in records], dtype=str)


def _parquet_chunks(path: Path, chunk_rows: int):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PrepareError(f"{path}: reading Parquet needs pyarrow (pip install 'newsgen[train]')") from None
    import pyarrow as pa

    try:
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_rows == 0:
            raise PrepareError(f"{path}: the file is empty")
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise PrepareError(f"{path}: cannot be read as Parquet: {exc}") from None


def prepare(
    inputs: list[Path],
    output: Path,
    *,
    min_title_words: int = 8,
    max_article_words: int = 100,
    validation_fraction: float = 0.1,
    seed: int = 42,
    chunk_rows: int = 10_000,
    progress: bool = True,
    input_format: str | None = None,
    columns: dict[str, str] | None = None,
    publication_names: tuple[str, ...] = (),
) -> Report:
    """`input_format`: csv, jsonl or parquet for every input (default: each file's extension). `columns`: ours
    -> the input's (see parse_columns). `publication_names`: names to strip from titles (see rule 2)."""
    if not 0 <= validation_fraction < 1:
        raise PrepareError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    columns = dict(columns or {})
    unknown = set(columns) - set(OUR_COLUMNS)
    if unknown:
        raise PrepareError(f"--columns: unknown column(s) of ours {sorted(unknown)}; ours are {', '.join(OUR_COLUMNS)}")
    for path in inputs:
        if not Path(path).is_file():
            raise PrepareError(f"{path}: no such file")
    formats = [format_of(Path(path), input_format) for path in inputs]
    report = Report(
        inputs=[str(p) for p in inputs],
        formats=formats,
        columns={ours: columns.get(ours, ours) for ours in OUR_COLUMNS},
        settings={
            "min_title_words": min_title_words,
            "max_article_words": max_article_words,
            "validation_fraction": validation_fraction,
            "seed": seed,
        },
    )
    output.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()  # 8-byte digests of normalised titles: memory per row, not per character
    cleaners = [TitleCleaner(), NamesCleaner(names=tuple(publication_names))]
    with_column: list[str] = []
    files = {name: open(output / f"{name}.jsonl.partial", "w", encoding="utf-8") for name in ("train", "validation")}
    try:
        with tqdm(unit=" rows", desc="prepare", disable=not progress) as bar:
            for path, fmt in zip(inputs, formats, strict=True):
                for number, chunk in enumerate(read_chunks(Path(path), chunk_rows, fmt, columns)):
                    if number == 0 and "publication" in chunk.columns:
                        with_column.append(str(path))
                    _prepare_chunk(
                        chunk,
                        report,
                        cleaners,
                        seen,
                        files,
                        min_title_words,
                        max_article_words,
                        validation_fraction,
                        seed,
                    )
                    bar.update(len(chunk))
    finally:
        for handle in files.values():
            handle.close()
    if not with_column:
        report.columns["publication"] = None  # no input has it
    report.publication_rule = _publication_rule(report, with_column, publication_names)
    if report.rows_out == 0:
        for name in files:
            (output / f"{name}.jsonl.partial").unlink(missing_ok=True)
        raise PrepareError(_why_empty(report))
    fingerprint = hashlib.sha256()
    for name in files:
        final = output / f"{name}.jsonl"
        (output / f"{name}.jsonl.partial").replace(final)
        fingerprint.update(final.read_bytes())
    report.fingerprint = fingerprint.hexdigest()
    (output / "report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _publication_rule(report: Report, with_column: list[str], names: tuple[str, ...]) -> str:
    parts = []
    if with_column:
        column = report.columns["publication"] or "publication"
        parts.append(f"the row's publication (column {column!r}) in {', '.join(with_column)}")
    if names:
        parts.append(f"the names given with --publication-names: {', '.join(names)}")
    if not parts:
        return "skipped: no publication column and no --publication-names"
    return "stripped " + "; and ".join(parts)


def _prepare_chunk(chunk, report, cleaners, seen, files, min_words, max_article_words, fraction, seed) -> None:
    publications = chunk["publication"] if "publication" in chunk.columns else [""] * len(chunk)
    for title, publication, content in zip(chunk["title"], publications, chunk["content"], strict=False):
        report.rows_in += 1
        title = WHITESPACE.sub(" ", title or "").strip()
        if not title or title.lower() in ("nan", "null", "none"):
            report.removed["empty_title"] += 1
            continue
        stripped = title
        for cleaner in cleaners:
            stripped = cleaner.strip(stripped, publication)
        if stripped != title:
            report.titles_with_publication_removed += 1
        if len(stripped.split()) < min_words:
            report.removed["short_title"] += 1
            continue
        key = normalise_title(stripped)
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        if digest in seen:
            report.removed["duplicate_title"] += 1
            continue
        seen.add(digest)
        article = first_words(content or "", max_article_words)
        if not article:
            report.rows_without_article += 1
        split = "validation" if in_validation(key, seed, fraction) else "train"
        row = {"title": stripped, "content": article, "publication": WHITESPACE.sub(" ", publication).strip()}
        files[split].write(json.dumps(row, ensure_ascii=False) + "\n")
        report.rows_out += 1
        setattr(report, f"{split}_rows", getattr(report, f"{split}_rows") + 1)


def _why_empty(report: Report) -> str:
    if report.rows_in == 0:
        return f"no rows in {', '.join(report.inputs)}"
    rule, count = max(report.removed.items(), key=lambda item: item[1])
    return (
        f"no rows left: {report.rows_in} rows read, {count} removed by rule '{rule}' "
        f"(all removals: {report.removed}); check --min-title-words and the input files"
    )
