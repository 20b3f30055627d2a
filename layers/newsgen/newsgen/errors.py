"""Errors that cross the library boundary. Each carries a stable `error_type` and an HTTP status, so that
handlers and the CLI turn them into clear messages without knowing the details; and the one JSON error body
({error, error_type, ...}) that the API and the batch results both answer with."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def error_body(message: str, error_type: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "error_type": error_type, **extra}


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's `exc.errors()` as {loc, msg, type}. The offending input is left out: it may be a prompt, and
    NaN would not survive JSON."""
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            # pydantic prefixes our validators' own sentences with "Value error, "
            "msg": e.get("msg", "").removeprefix("Value error, "),
            "type": e.get("type", ""),
        }
        for e in errors
    ]


def not_json(what: str, exc: json.JSONDecodeError) -> str:
    """`what is not valid JSON: <why> at line L column C`, the position as an editor shows it."""
    return f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def problem_text(problem: dict[str, Any], default: str = "", skip: int = 0, option: bool = False) -> str:
    """One problem as `where: what` (`--where` for a command-line option), `default` where loc is empty."""
    where = ".".join(problem["loc"][skip:]) or default
    return f"{'--' + where.replace('_', '-') if option else where}: {problem['msg']}"


class NewsgenError(Exception):
    error_type = "newsgen_error"
    status_code = 500
    # What a caller of an API may be told when the service is at fault (5xx): the message itself names
    # buckets, keys, local paths and library errors, which belong in the log. 4xx messages describe the
    # caller's own request and are told as they are.
    public_summary = "the service failed to answer"

    def __init_subclass__(cls, error_type: str | None = None, status_code: int | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.error_type = error_type or cls.error_type
        cls.status_code = status_code or cls.status_code

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details

    def public_message(self) -> str:
        return self.message if self.status_code < 500 else self.public_summary

    def to_dict(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, **({"details": self.details} if self.details else {}))


class InvalidRequest(NewsgenError, error_type="invalid_request", status_code=400):
    """The caller asked for something the model cannot do (prompt too long for the context, ...)."""


class ArtifactError(NewsgenError, error_type="artifact_error", status_code=503):
    """A published model artifact is missing, incomplete, corrupt, unsafe or of an unknown format."""


class ArtifactNotFound(ArtifactError, error_type="artifact_not_found"):
    pass


class ChecksumMismatch(ArtifactError, error_type="checksum_mismatch"):
    pass


class UnsupportedArtifact(ArtifactError, error_type="unsupported_artifact"):
    pass


class InvalidVersionName(ArtifactError, error_type="invalid_version_name"):
    """A version name (pinned, or read from LATEST) that cannot be one: it would become an S3 key and a local
    directory, so nothing is asked of S3 with it."""


class UnsafeArtifact(ArtifactError, error_type="unsafe_artifact"):
    """Pickle-based weights or remote code: never loaded."""


class VersionExists(ArtifactError, error_type="version_exists", status_code=409):
    """Published versions are immutable; a new version needs a new name."""


class ModelUnavailable(NewsgenError, error_type="model_unavailable", status_code=503):
    """A model could not be resolved, downloaded or loaded; the next request tries again. details: `cause`
    (the underlying error type) and `task` where known."""

    public_summary = "a model this request needs cannot be loaded right now"

    def public_message(self) -> str:
        task = self.details.get("task")
        return f"the {task} model cannot be loaded right now" if task else self.public_summary


class BatchJobError(NewsgenError, error_type="batch_job_error", status_code=400):
    """The file as a whole is not a batch input."""


class InvalidLine(NewsgenError, error_type="validation_error", status_code=400):
    """One line cannot be read as a request; only that line fails."""
