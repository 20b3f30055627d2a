"""Batch records as requests: validation, cost, and generation through the news service.

Each record gives exactly one output entry: a `result`, an `error` (that line's own problem), or
`skipped` for a blank line. A record's bytes can only ever fail its own entry.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from newsgen.batch.inputs import Record
from newsgen.errors import (
    InvalidLine,
    ModelUnavailable,
    NewsgenError,
    error_body,
    not_json,
    problem_text,
    validation_problems,
)
from newsgen.schemas import (
    MAX_DETECT_CHARS,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_RESULTS,
    NEWS_TAKES_PART_PARAMETERS,
    GenerationParameters,
    Strict,
    _clean_text,
)

GROUP_ROWS = 32  # prompts × n per generate call: big enough to batch, small enough for the time budget


class ChunkTimedOut(NewsgenError):
    """A chunk ran out of the worker's time: it is retried whole, never stored cut short."""

    error_type = "chunk_timed_out"


class BatchLine(Strict):
    """One request of a batch file."""

    id: str | int | None = None
    task: Literal["headline", "article", "news", "detect"]
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    headline: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    text: str | None = Field(None, min_length=1, max_length=MAX_DETECT_CHARS, description="detect: the text to check")
    n: int = Field(1, ge=1, le=MAX_RESULTS)
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    headline_parameters: GenerationParameters = Field(default_factory=GenerationParameters, description="news only")
    article_parameters: GenerationParameters = Field(default_factory=GenerationParameters, description="news only")

    @field_validator("prompt", "headline")
    @classmethod
    def _text(cls, value: str | None, info) -> str | None:
        return _clean_text(value, info.field_name)

    @model_validator(mode="after")
    def _inputs_fit_task(self):
        if (self.task == "detect") != (self.text is not None):
            raise ValueError(
                "a detect line takes 'text' (and nothing to generate from)"
                if self.task == "detect"
                else f"a {self.task} line takes no 'text'"
            )
        if self.task == "detect" and (self.prompt is not None or self.headline is not None):
            raise ValueError("a detect line takes 'text', not 'prompt' or 'headline'")
        if self.task == "article" and not (self.headline or "").strip():
            raise ValueError("an article line needs a non-blank 'headline'")
        if self.task not in ("article", "detect") and self.headline is not None:
            raise ValueError(f"a {self.task} line takes 'prompt', not 'headline'")
        if self.task == "article" and self.prompt is not None:
            raise ValueError("an article line takes 'headline', not 'prompt'")
        if self.task == "news" and "parameters" in self.model_fields_set:
            raise ValueError(NEWS_TAKES_PART_PARAMETERS.replace("/v1/news", "a news line"))
        if self.task != "news" and self.model_fields_set & {"headline_parameters", "article_parameters"}:
            raise ValueError(
                f"a {self.task} line takes 'parameters'; headline_parameters and article_parameters are for news"
            )
        return self

    def decoding(self) -> list[GenerationParameters]:
        """The parameters of each generate call the line makes."""
        return [self.headline_parameters, self.article_parameters] if self.task == "news" else [self.parameters]

    def cost(self) -> int:
        """Tokens this line may generate at most (the dispatcher sizes chunks by it)."""
        if self.task == "detect":
            return 1
        return sum(self.n * (p.max_new_tokens or MAX_NEW_TOKENS) * (p.num_beams or 1) for p in self.decoding())


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidLine(not_json(what, exc)) from None
    except RecursionError:
        raise InvalidLine(f"{what} is nested too deeply") from None


def parse_record(record: Record) -> BatchLine:
    """A record → a validated request, or NewsgenError/ValidationError naming what is wrong."""
    if record.problem:
        raise InvalidLine(record.problem)
    if record.fields is not None:
        fields: dict[str, Any] = dict(record.fields)
        for column in ("parameters", "headline_parameters", "article_parameters"):
            if column in fields:
                fields[column] = _json(fields[column], f"{column} column")
        return BatchLine.model_validate(fields)
    return BatchLine.model_validate(_json(record.raw or "", "line"))


def record_cost(record: Record) -> int:
    try:
        return parse_record(record).cost()
    except (ValidationError, NewsgenError):
        return 1


def error_entry(exc: Exception) -> dict:
    if isinstance(exc, ValidationError):
        problems = validation_problems(exc.errors())
        return error_body(problem_text(problems[0], "line"), "validation_error", details=problems)
    if isinstance(exc, NewsgenError):
        return exc.to_dict()
    return error_body(str(exc), "internal_error")


def request_id(record: Record) -> Any:
    """The line's id when it can be read, so that a failed line is still matched to its input."""
    if record.fields is not None:
        return record.fields.get("id")
    try:
        value = json.loads(record.raw or "")
    except (json.JSONDecodeError, RecursionError):
        return None
    return value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), (str, int)) else None


def base_entry(record: Record) -> dict:
    return {"id": request_id(record), "line": record.line}


def parse_all(records: list[Record]) -> tuple[list[dict | None], list[tuple[int, BatchLine]]]:
    """Entries for the records that need no model (blank, invalid), and the valid requests by index."""
    entries: list[dict | None] = [None] * len(records)
    valid = []
    for index, record in enumerate(records):
        if record.blank:
            entries[index] = {"id": None, "line": record.line, "skipped": "blank line"}
            continue
        try:
            valid.append((index, parse_record(record)))
        except (ValidationError, NewsgenError) as exc:
            entries[index] = {**base_entry(record), "error": error_entry(exc)}
    return entries, valid


def process_records(service, records: list[Record], deadline: float | None) -> list[dict]:
    """One output entry per record, in order. Lines that share task, n and parameters (and no seed) are
    generated together; a seeded line runs alone so that its seed reproduces its text."""
    entries, valid = parse_all(records)
    groups: dict[str, list[tuple[int, BatchLine]]] = {}
    for index, line in valid:
        decoding = line.decoding()
        key = json.dumps([line.task, line.n, [p.model_dump() for p in decoding]], sort_keys=True)
        if any(p.seed is not None for p in decoding):
            key += f"#{index}"
        groups.setdefault(key, []).append((index, line))
    for members in groups.values():
        per_call = max(1, GROUP_ROWS // members[0][1].n)
        for start in range(0, len(members), per_call):
            _generate_group(service, members[start : start + per_call], records, entries, deadline)
    return entries  # type: ignore[return-value]


def _generate_group(service, members, records, entries, deadline) -> None:
    task, n, decoding = members[0][1].task, members[0][1].n, members[0][1].decoding()
    if task == "detect":
        for (index, line), detection in zip(members, service.detect([line.text for _, line in members]), strict=False):
            entries[index] = {"id": line.id, "line": records[index].line, "result": detection.model_dump()}
        return
    inputs = [line.headline if task == "article" else line.prompt for _, line in members]
    run = {"headline": service.headlines_many, "article": service.articles_many, "news": service.news_many}[task]
    try:
        responses = run(inputs, n, *decoding, deadline)
    except ModelUnavailable:
        raise  # the whole chunk is retried later (and ends in the dead-letter queue if it never recovers)
    except NewsgenError as exc:
        if len(members) > 1:  # one line's problem (a prompt too long for the context) must not fail its neighbours
            for member in members:
                _generate_group(service, [member], records, entries, deadline)
            return
        index, line = members[0]
        entries[index] = {"id": line.id, "line": records[index].line, "error": error_entry(exc)}
        return
    for (index, line), response in zip(members, responses, strict=False):
        result = response.model_dump(mode="json", exclude_none=True)
        if _ran_out_of_time(result):
            raise ChunkTimedOut(f"line {records[index].line} ran out of the worker's time; the chunk is retried")
        entries[index] = {"id": line.id, "line": records[index].line, "result": result}


def _ran_out_of_time(result: dict) -> bool:
    texts = []
    for item in result.get("results", []):
        texts.extend([item["headline"], item["article"]] if "headline" in item else [item])
    return any(text.get("finish_reason") == "time" for text in texts)
