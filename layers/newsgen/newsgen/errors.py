"""Errors that cross the library boundary. Each carries a stable `error_type` and an HTTP status, so that
handlers and the CLI turn them into clear messages without knowing the details."""


class NewsgenError(Exception):
    error_type = "newsgen_error"
    status_code = 500
    # What a caller of an API may be told when the service is at fault (5xx): the message itself names
    # buckets, keys, local paths and library errors, which belong in the log. 4xx messages describe the
    # caller's own request and are told as they are.
    public_summary = "the service failed to answer"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def public_message(self) -> str:
        return self.message if self.status_code < 500 else self.public_summary

    def to_dict(self) -> dict:
        body = {"error": self.message, "error_type": self.error_type}
        if self.details:
            body["details"] = self.details
        return body


class InvalidRequest(NewsgenError):
    """The caller asked for something the model cannot do (prompt too long for the context, ...)."""

    error_type = "invalid_request"
    status_code = 400


class ArtifactError(NewsgenError):
    """A published model artifact is missing, incomplete, corrupt, unsafe or of an unknown format."""

    error_type = "artifact_error"
    status_code = 503


class ArtifactNotFound(ArtifactError):
    error_type = "artifact_not_found"


class ChecksumMismatch(ArtifactError):
    error_type = "checksum_mismatch"


class UnsupportedArtifact(ArtifactError):
    error_type = "unsupported_artifact"


class InvalidVersionName(ArtifactError):
    """A version name (pinned, or read from LATEST) that cannot be one: it would become an S3 key and a local
    directory, so nothing is asked of S3 with it."""

    error_type = "invalid_version_name"


class UnsafeArtifact(ArtifactError):
    """Pickle-based weights or remote code: never loaded."""

    error_type = "unsafe_artifact"


class VersionExists(ArtifactError):
    """Published versions are immutable; a new version needs a new name."""

    error_type = "version_exists"
    status_code = 409


class ModelUnavailable(NewsgenError):
    """A model could not be resolved, downloaded or loaded; the next request tries again. details: `cause`
    (the underlying error type) and `task` where known."""

    error_type = "model_unavailable"
    status_code = 503
    public_summary = "a model this request needs cannot be loaded right now"

    def public_message(self) -> str:
        task = self.details.get("task")
        return f"the {task} model cannot be loaded right now" if task else self.public_summary


class BatchJobError(NewsgenError):
    """The file as a whole is not a batch input."""

    error_type = "batch_job_error"
    status_code = 400


class InvalidLine(NewsgenError):
    """One line cannot be read as a request; only that line fails."""

    error_type = "validation_error"
    status_code = 400
