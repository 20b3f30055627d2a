"""Data preparation: All-the-News CSVs → train.jsonl, validation.jsonl and report.json.

Reads in chunks so memory stays flat on multi-GB inputs. Rules, each counted in the report:
  1. drop rows whose title is empty or null
  2. remove the publication's name from the title (suffix or prefix with a separator)
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

REQUIRED_COLUMNS = ("title", "publication", "content")
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


@dataclass
class TitleCleaner:
    """Compiled per publication: strip_title is called once per row."""

    _patterns: dict[str, re.Pattern | None] = field(default_factory=dict)

    def pattern(self, publication: str) -> re.Pattern | None:
        if publication not in self._patterns:
            names = publication_names(publication)
            if names:
                alternatives = "|".join(re.escape(n) for n in names)
                self._patterns[publication] = re.compile(
                    rf"^(?:{alternatives}){SEPARATOR}|{SEPARATOR}(?:{alternatives})\s*$", re.IGNORECASE
                )
            else:
                self._patterns[publication] = None
        return self._patterns[publication]

    def strip(self, title: str, publication: str) -> str:
        pattern = self.pattern(publication)
        return pattern.sub("", title).strip() if pattern else title


def normalise_title(title: str) -> str:
    return WHITESPACE.sub(" ", title).strip().casefold()


def first_words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])


def in_validation(normalised_title: str, seed: int, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{normalised_title}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def read_chunks(path: Path, chunk_rows: int):
    if not path.is_file():
        raise PrepareError(f"{path}: no such file")
    try:
        reader = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_rows,
            encoding="utf-8",
            encoding_errors="replace",  # a stray byte costs one character, not the file
            on_bad_lines="warn",
        )
        for chunk in reader:
            missing = [c for c in REQUIRED_COLUMNS if c not in chunk.columns]
            if missing:
                raise PrepareError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected the All-the-News schema "
                    f"(,id,title,publication,author,date,year,month,url,content), found {', '.join(map(str, chunk.columns))}"
                )
            yield chunk
    except pd.errors.EmptyDataError:
        raise PrepareError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, OSError) as exc:
        raise PrepareError(f"{path}: cannot be read as CSV: {exc}") from None


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
) -> Report:
    if not 0 <= validation_fraction < 1:
        raise PrepareError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    for path in inputs:
        if not Path(path).is_file():
            raise PrepareError(f"{path}: no such file")
    report = Report(
        inputs=[str(p) for p in inputs],
        settings={
            "min_title_words": min_title_words,
            "max_article_words": max_article_words,
            "validation_fraction": validation_fraction,
            "seed": seed,
        },
    )
    output.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()  # 8-byte digests of normalised titles: memory per row, not per character
    cleaner = TitleCleaner()
    files = {name: open(output / f"{name}.jsonl.partial", "w", encoding="utf-8") for name in ("train", "validation")}
    try:
        with tqdm(unit=" rows", desc="prepare", disable=not progress) as bar:
            for path in inputs:
                for chunk in read_chunks(Path(path), chunk_rows):
                    _prepare_chunk(
                        chunk,
                        report,
                        cleaner,
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


def _prepare_chunk(chunk, report, cleaner, seen, files, min_words, max_article_words, fraction, seed) -> None:
    for title, publication, content in zip(chunk["title"], chunk["publication"], chunk["content"], strict=False):
        report.rows_in += 1
        title = WHITESPACE.sub(" ", title or "").strip()
        if not title or title.lower() in ("nan", "null", "none"):
            report.removed["empty_title"] += 1
            continue
        stripped = cleaner.strip(title, publication)
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
