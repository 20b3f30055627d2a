"""The artifact contract: where a model version lives in S3, what its manifest says, how it is published.

    s3://<bucket>/<prefix>/<task>/<version>/claim.json      (written first: which files this version gets)
    s3://<bucket>/<prefix>/<task>/<version>/config.json, model.safetensors, tokenizer files, ...
    s3://<bucket>/<prefix>/<task>/<version>/manifest.json   (written after every file)
    s3://<bucket>/<prefix>/<task>/LATEST                    (the version name; moved last)

A reader that follows LATEST, or a pinned version's manifest, therefore never sees half a version. The claim
and the manifest are conditional writes (If-None-Match: *): of two publishers racing for one version, one
succeeds and the other gets VersionExists without having overwritten any of its files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from newsgen.errors import (
    ArtifactNotFound,
    InvalidVersionName,
    UnsafeArtifact,
    UnsupportedArtifact,
    VersionExists,
    problem_text,
    validation_problems,
)
from newsgen.prompt import PROMPT_FORMATS, SPECIAL_TOKENS, Task

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CLAIM_NAME = "claim.json"
LATEST_NAME = "LATEST"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Pickle-based weight formats execute code on load: refused everywhere, at publish and at load.
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Weight exports: the trained fp32 checkpoint, or its int8 form (newsgen.optimize), which serves without
# quantising at load and downloads about a quarter less.
Export = Literal["fp32", "int8"]
EXPORTS: tuple[Export, ...] = get_args(Export)
# How the server prepares fp32 weights when it loads them (an int8 export is served as published).
Quantize = Literal["none", "int8"]
QUANTIZE_MODES: tuple[Quantize, ...] = get_args(Quantize)
# What computes a served model's forward: newsgen.gpt2 (torch alone) or transformers' GPT2LMHeadModel.
Forward = Literal["newsgen", "transformers"]
FORWARDS: tuple[Forward, ...] = get_args(Forward)
INT8_WEIGHTS = "model.int8.safetensors"
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "fp32": ("config.json", "model.safetensors", "tokenizer_config.json"),
    "int8": ("config.json", INT8_WEIGHTS, "tokenizer_config.json"),
}
# What a published version holds from a training output directory (checkpoints/, plots, logs stay behind).
ARTIFACT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    INT8_WEIGHTS,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "README.md",
    "training_report.json",
)


class FileEntry(BaseModel):
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    format_version: int
    task: Task
    version: str
    base_model: str
    special_tokens: dict[str, Any]
    files: list[FileEntry]
    metrics: dict[str, Any] = {}
    data_fingerprint: str | None = None
    export: str = "fp32"
    prompt_format: int = 1  # newsgen.prompt: a manifest written before format 2 existed is format 1
    created_at: str

    @field_validator("prompt_format")
    @classmethod
    def _spoken(cls, value: int) -> int:
        if value not in PROMPT_FORMATS:
            raise ValueError(
                f"prompt_format {value} is not one this build speaks ({', '.join(map(str, PROMPT_FORMATS))})"
            )
        return value

    @field_validator("format_version", "export")
    @classmethod
    def _readable(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "format_version" and value != FORMAT_VERSION:
            raise ValueError(f"manifest format_version {value} is not supported (this build reads {FORMAT_VERSION})")
        if info.field_name == "export" and value not in EXPORTS:
            raise ValueError(f"export {value!r} is not one this build loads ({', '.join(EXPORTS)})")
        return value

    @field_validator("version")
    @classmethod
    def _version_name(cls, value: str) -> str:
        return check_version_name(value)

    @field_validator("files")
    @classmethod
    def _safe_files(cls, files: list[FileEntry]) -> list[FileEntry]:
        for entry in files:
            check_relative_path(entry.path)
        return files


def check_relative_path(path: str) -> None:
    """A manifest path must stay inside the version directory and must not name pickle weights."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise UnsafeArtifact(f"file path {path!r} escapes the artifact directory")
    if path.lower().endswith(UNSAFE_SUFFIXES):
        raise UnsafeArtifact(f"{path!r} is a pickle-based checkpoint; only safetensors weights are accepted")


def parse_manifest(raw: bytes | str, where: str = "manifest") -> Manifest:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedArtifact(f"{where} is not valid JSON: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(problem_text(p, "manifest") for p in validation_problems(exc.errors()))
        raise UnsupportedArtifact(f"{where} is not a newsgen manifest: {problems}") from None


def check_version_name(version: str) -> str:
    if not VERSION_PATTERN.match(version) or version == LATEST_NAME:
        raise ValueError(f"version {version!r} must match {VERSION_PATTERN.pattern} and not be {LATEST_NAME}")
    return version


def checked_version(version: str, what: str) -> str:
    """The one check of a version name read at run time (pinned in the settings, or from LATEST), before it
    becomes an S3 key or a directory: InvalidVersionName if it cannot be one."""
    try:
        return check_version_name(version)
    except ValueError:
        raise InvalidVersionName(
            f"{what} {version[:80]!r} is not a version name (it must match {VERSION_PATTERN.pattern} and not be "
            f"{LATEST_NAME})"
        ) from None


def task_prefix(prefix: str, task: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{task}" if prefix else task


def version_prefix(prefix: str, task: str, version: str) -> str:
    return f"{task_prefix(prefix, task)}/{version}/"


def latest_key(prefix: str, task: str) -> str:
    return f"{task_prefix(prefix, task)}/{LATEST_NAME}"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def new_version_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ")


def build_manifest(
    model_dir: Path,
    *,
    task: str,
    version: str,
    base_model: str,
    metrics: dict[str, Any] | None = None,
    data_fingerprint: str | None = None,
    export: str = "fp32",
) -> Manifest:
    """Describe every file of a save_pretrained directory; refuse one that is incomplete or unsafe."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ArtifactNotFound(f"model directory {model_dir} does not exist")
    unsafe = sorted(p.name for p in model_dir.iterdir() if p.name.lower().endswith(UNSAFE_SUFFIXES))
    if unsafe:
        raise UnsafeArtifact(
            f"{model_dir} holds pickle-based weights ({', '.join(unsafe)}); re-save with safetensors "
            "(save_pretrained(..., safe_serialization=True)) and remove them"
        )
    files = sorted({p for pattern in ARTIFACT_PATTERNS for p in model_dir.glob(pattern) if p.is_file()})
    names = {p.relative_to(model_dir).as_posix() for p in files}
    if export not in EXPORTS:
        raise ValueError(f"export {export!r}; choose one of {', '.join(EXPORTS)}")
    missing = [name for name in REQUIRED_FILES[export] if name not in names]
    if missing:
        raise ArtifactNotFound(f"model directory {model_dir} lacks {', '.join(missing)}")
    return Manifest(
        format_version=FORMAT_VERSION,
        task=task,
        version=check_version_name(version),
        base_model=base_model,
        special_tokens=SPECIAL_TOKENS,
        files=[
            FileEntry(path=p.relative_to(model_dir).as_posix(), size=p.stat().st_size, sha256=sha256_file(p))
            for p in files
        ],
        metrics=metrics or {},
        data_fingerprint=data_fingerprint,
        export=export,
        prompt_format=prompt_format_of(model_dir),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def prompt_format_of(model_dir: Path) -> int:
    """The prompt format the model was trained in, from its config.json (newsgen.prompt); 1 when unnamed."""
    try:
        value = json.loads((Path(model_dir) / "config.json").read_text()).get("prompt_format", 1)
    except (OSError, ValueError, AttributeError):
        return 1  # an unreadable config is refused, with its own message, when the model is loaded
    if value not in PROMPT_FORMATS:
        raise UnsupportedArtifact(
            f"{model_dir}/config.json: prompt_format {value!r} is not one this build speaks "
            f"({', '.join(map(str, PROMPT_FORMATS))}); update newsgen"
        )
    return int(value)


def object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def publish(
    s3,
    model_dir: Path,
    *,
    bucket: str,
    prefix: str,
    manifest: Manifest,
    move_latest: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Upload a version: every file, then the manifest, then (optionally) the LATEST pointer.

    A version that already has a manifest is never overwritten: published versions are immutable, so a
    rollback to them is always exact.
    """
    from newsgen.s3 import TRANSFER_CONFIG

    base = version_prefix(prefix, manifest.task, manifest.version)
    if object_exists(s3, bucket, base + MANIFEST_NAME):
        raise VersionExists(f"s3://{bucket}/{base} is already published; choose another --version")
    claim_version(s3, bucket, base, manifest)
    for entry in manifest.files:
        s3.upload_file(
            str(Path(model_dir) / entry.path), bucket, base + entry.path, Config=TRANSFER_CONFIG, Callback=progress
        )
    try:
        s3.put_object(
            Bucket=bucket,
            Key=base + MANIFEST_NAME,
            Body=manifest.model_dump_json(indent=2).encode(),
            ContentType="application/json",
            IfNoneMatch="*",  # the existence check above and this write are not one step: S3 makes them one
        )
    except s3.exceptions.ClientError as exc:
        if not _lost_race(exc):
            raise
        raise VersionExists(
            f"s3://{bucket}/{base} was published by another publisher meanwhile; choose another --version"
        ) from None
    if move_latest:
        set_latest(s3, bucket=bucket, prefix=prefix, task=manifest.task, version=manifest.version)
    return manifest


def files_fingerprint(manifest: Manifest) -> str:
    """sha256 over a version's file list (paths, sizes, sha256s): equal exactly when the files are."""
    listing = sorted((entry.path, entry.size, entry.sha256) for entry in manifest.files)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _lost_race(exc) -> bool:
    """A conditional write refused because the object exists (412), or because another conditional write of
    it is in flight (409)."""
    return exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def claim_version(s3, bucket: str, base: str, manifest: Manifest) -> None:
    """Claim a version's keys before writing any of them: a conditional put of the files' fingerprint. A
    publisher that finds another fingerprint there stops before overwriting a byte of another publish (S3 has
    no conditional multipart upload to guard each file with); one that finds its own — the same publish run
    again after an interruption, or a twin with the same files — goes on, since it writes the same bytes."""
    fingerprint = files_fingerprint(manifest)
    claim = {
        "task": manifest.task,
        "version": manifest.version,
        "files_sha256": fingerprint,
        "created_at": manifest.created_at,
    }
    try:
        s3.put_object(
            Bucket=bucket,
            Key=base + CLAIM_NAME,
            Body=json.dumps(claim, indent=2).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
        return
    except s3.exceptions.ClientError as exc:
        if not _lost_race(exc):
            raise
    try:
        held = json.loads(s3.get_object(Bucket=bucket, Key=base + CLAIM_NAME)["Body"].read())
    except (s3.exceptions.NoSuchKey, ValueError):
        held = {}
    if not isinstance(held, dict) or held.get("files_sha256") != fingerprint:
        started = held.get("created_at", "at an unknown time") if isinstance(held, dict) else "at an unknown time"
        raise VersionExists(
            f"s3://{bucket}/{base} is claimed by a publish of other files (started {started}), running or "
            "interrupted; choose another --version"
        )


def set_latest(s3, *, bucket: str, prefix: str, task: str, version: str) -> None:
    """Point LATEST at a version whose manifest exists (publish, or roll back to an older version)."""
    check_version_name(version)
    if not object_exists(s3, bucket, version_prefix(prefix, task, version) + MANIFEST_NAME):
        raise ArtifactNotFound(
            f"{task} version {version} has no manifest in s3://{bucket}/{task_prefix(prefix, task)}/"
        )
    s3.put_object(Bucket=bucket, Key=latest_key(prefix, task), Body=version.encode(), ContentType="text/plain")


def read_latest(s3, *, bucket: str, prefix: str, task: str) -> str:
    key = latest_key(prefix, task)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise ArtifactNotFound(f"no {task} model is published: s3://{bucket}/{key} does not exist") from None
    return checked_version(body.decode("utf-8", errors="replace").strip(), f"s3://{bucket}/{key} names")


def list_versions(s3, *, bucket: str, prefix: str, task: str) -> list[str]:
    """The version names under a task's prefix: every claimed version, published or not (a publish that was
    interrupted has a claim but no manifest)."""
    base = task_prefix(prefix, task) + "/"
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base, Delimiter="/"):
        names += [entry["Prefix"][len(base) :].rstrip("/") for entry in page.get("CommonPrefixes", [])]
    return names


def read_manifest(s3, *, bucket: str, prefix: str, task: str, version: str) -> Manifest:
    checked_version(version, f"{task} version")
    key = version_prefix(prefix, task, version) + MANIFEST_NAME
    try:
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise ArtifactNotFound(
            f"{task} version {version} is not published: s3://{bucket}/{key} does not exist"
        ) from None
    manifest = parse_manifest(raw, where=f"s3://{bucket}/{key}")
    if manifest.task != task or manifest.version != version:
        raise UnsupportedArtifact(
            f"s3://{bucket}/{key} describes {manifest.task} {manifest.version}, not {task} {version}"
        )
    return manifest
