"""The model store: resolves a task's version in S3, downloads it once per container, verifies every file
against the manifest, loads it with safetensors only, and keeps it for warm invocations.

With version LATEST the pointer is re-read at most every `latest_ttl_seconds`; a new version replaces the
loaded one only after it downloaded, verified and loaded, so a broken publish never takes a working
container down. A version that failed for a reason of its own (a file missing, corrupt, unsafe or
unsupported) is not fetched again for `broken_ttl_seconds`: requests meanwhile get its error at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from newsgen import artifacts
from newsgen.artifacts import LATEST_NAME, Forward, Manifest
from newsgen.errors import (
    ArtifactError,
    ChecksumMismatch,
    ModelUnavailable,
    NewsgenError,
    UnsafeArtifact,
    UnsupportedArtifact,
)
from newsgen.optimize import load_int8, optimize_for_cpu

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("gpt2",)


@dataclass
class LoadedModel:
    task: str
    version: str
    manifest: Manifest
    path: Path
    model: Any
    tokenizer: Any
    timings: dict[str, float] = field(default_factory=dict)
    quantize: str = "none"  # what an fp32 export was quantised to at load (beam search's model gets the same)
    _transformers: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)
    _transformers_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def context_length(self) -> int:
        return int(self.model.config.n_positions)

    def transformers_model(self) -> tuple[Any, Any]:
        """(model, tokenizer) as transformers' classes, for what only they do (beam search with generate()): the
        served ones when they are transformers', else loaded once from the same directory, quantised as the
        served model is. Only the first request that needs them pays transformers' imports and the load."""
        if is_transformers_model(self.model):
            return self.model, self.tokenizer
        with self._transformers_lock:
            if self._transformers is None:
                model, tokenizer = load_model_dir(self.path, self.manifest, forward="transformers")
                if self.manifest.export == "fp32":
                    model = optimize_for_cpu(model, self.quantize)
                self._transformers = (model, tokenizer)
                logger.info("loaded transformers' model of %s %s for beam search", self.task, self.version)
            return self._transformers


def verify_directory(path: Path, manifest: Manifest) -> None:
    """Every manifest file present with its size and sha256; no pickle weights beside them."""
    for entry in manifest.files:
        file = path / entry.path
        if not file.is_file():
            raise artifacts.ArtifactNotFound(f"{manifest.task} {manifest.version}: {entry.path} is missing")
        size = file.stat().st_size
        if size != entry.size:
            raise ChecksumMismatch(
                f"{manifest.task} {manifest.version}: {entry.path} has {size} bytes, manifest says {entry.size}"
            )
        digest = artifacts.sha256_file(file)
        if digest != entry.sha256:
            raise ChecksumMismatch(
                f"{manifest.task} {manifest.version}: sha256 of {entry.path} is {digest[:12]}…, "
                f"manifest says {entry.sha256[:12]}…; refusing to load a corrupt or tampered file"
            )
    for file in path.rglob("*"):
        if file.name.lower().endswith(artifacts.UNSAFE_SUFFIXES):
            raise UnsafeArtifact(f"{file.name} is a pickle-based checkpoint; only safetensors weights are loaded")


FETCH_THREADS = 4
CHUNK_BYTES = 8 * 1024 * 1024


def _stream(body, handle) -> tuple[Any, int]:
    """Copy a response body to a file and sha256 it, the three overlapped: while chunk i is written and
    hashed (each on its own thread; both release the GIL) chunk i + 1 is read from the socket. At most a few
    chunks are held. Returns (digest, size)."""
    digest, size = hashlib.sha256(), 0
    with ThreadPoolExecutor(1) as writer, ThreadPoolExecutor(1) as hasher:
        pending: deque = deque()
        for chunk in body.iter_chunks(chunk_size=CHUNK_BYTES):
            size += len(chunk)
            pending.append((writer.submit(handle.write, chunk), hasher.submit(digest.update, chunk)))
            while len(pending) > 2:
                for done in pending.popleft():
                    done.result()
        for futures in pending:
            for done in futures:
                done.result()
    return digest, size


def load_model_dir(
    path: Path, manifest: Manifest, forward: Forward = "transformers", quantize: str = "none"
) -> tuple[Any, Any]:
    """Load a verified save_pretrained directory: safetensors only, no remote code, no network.

    forward="newsgen": newsgen.gpt2's model (quantised to `quantize` if the export is fp32) with newsgen.tokenizer's
    tokenizer, neither importing transformers; a GPT-2 variant that newsgen.gpt2 does not compute is loaded with
    transformers instead (logged). forward="transformers": transformers' GPT2LMHeadModel, unquantised (the caller
    applies newsgen.optimize.optimize_for_cpu), with transformers' tokenizer.
    """
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES or "auto_map" in config:
        raise UnsupportedArtifact(
            f"{manifest.task} {manifest.version}: model_type {config.get('model_type')!r} is not supported "
            f"(expected one of {SUPPORTED_MODEL_TYPES}, without custom code)"
        )
    if forward == "newsgen":
        from newsgen import gpt2

        try:
            gpt2.Config.from_json(config)
        except ValueError as exc:
            logger.warning("%s %s: serving with transformers: %s", manifest.task, manifest.version, exc)
        else:
            from newsgen import tokenizer as tokenizers

            tokenizer = _checked(tokenizers.load(path), manifest)
            try:
                return gpt2.load(path, manifest.export, quantize), tokenizer
            except ValueError as exc:
                raise UnsupportedArtifact(f"{manifest.task} {manifest.version}: {exc}") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _checked(AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False), manifest)
    if manifest.export == "int8":
        from transformers import AutoConfig, GenerationConfig

        model_config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = load_int8(path / artifacts.INT8_WEIGHTS, model_config)
        if (path / "generation_config.json").is_file():  # the decoding defaults from_pretrained would read
            model.generation_config = GenerationConfig.from_pretrained(path, local_files_only=True)
        return model, tokenizer
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=torch.float32
    )
    model.eval()
    return model, tokenizer


def _checked(tokenizer, manifest: Manifest):
    from newsgen.prompt import check_tokenizer

    try:
        check_tokenizer(tokenizer)
    except ValueError as exc:
        raise UnsupportedArtifact(f"{manifest.task} {manifest.version}: {exc}") from None
    tokenizer.padding_side = "left"  # decoder-only batches pad on the left so every row continues its prompt
    return tokenizer


def is_transformers_model(model) -> bool:
    """Whether a loaded model is transformers' (the fallback) rather than newsgen.gpt2's."""
    from newsgen import gpt2

    return not isinstance(model, gpt2.GPT2)


FETCH_ERRORS = (NewsgenError, OSError, ClientError, BotoCoreError)


def unavailable(task: str, version: str, exc: BaseException) -> ModelUnavailable:
    if isinstance(exc, ModelUnavailable):
        exc.details.setdefault("task", task)
        return exc
    message = getattr(exc, "message", None) or str(exc)
    cause = getattr(exc, "error_type", None) or type(exc).__name__
    details = {**(getattr(exc, "details", None) or {}), "cause": cause, "task": task}
    return ModelUnavailable(f"{task} model {version} cannot be loaded: {message}", **details)


class ModelStore:
    def __init__(
        self,
        *,
        s3,
        bucket: str,
        prefix: str,
        cache_dir: Path,
        latest_ttl_seconds: float = 300.0,
        disk_headroom_bytes: int = 16 * 1024 * 1024,
        on_loaded: Callable[[LoadedModel], None] | None = None,
        quantize: str = "int8",
        broken_ttl_seconds: float = 30.0,
        forward: Forward = "newsgen",
    ):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.cache_dir = Path(cache_dir)
        self.latest_ttl_seconds = latest_ttl_seconds
        self.disk_headroom_bytes = disk_headroom_bytes
        self.on_loaded = on_loaded
        self.quantize = quantize
        self.broken_ttl_seconds = broken_ttl_seconds
        self.forward = forward
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._broken: dict[tuple[str, str], tuple[float, ArtifactError]] = {}  # -> (retry after, its error)
        self._latest: dict[str, tuple[str, float]] = {}  # task -> (version, checked at)
        self._lock = threading.RLock()

    # --- public -------------------------------------------------------------------------------------
    def get(self, task: str, version: str = LATEST_NAME) -> LoadedModel:
        """The loaded model for a task at a pinned version or LATEST. Raises ModelUnavailable."""
        with self._lock:
            if version != LATEST_NAME:
                return self._get_pinned(task, version)
            return self._get_latest(task)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    # --- internals ----------------------------------------------------------------------------------
    def _get_pinned(self, task: str, version: str) -> LoadedModel:
        if (task, version) in self._loaded:
            return self._loaded[(task, version)]
        try:
            artifacts.checked_version(version, f"pinned {task} version")  # as LATEST's is, before any S3 key
            return self._fetch_unless_broken(task, version)
        except FETCH_ERRORS as exc:
            raise unavailable(task, version, exc) from exc

    def _get_latest(self, task: str) -> LoadedModel:
        now = time.monotonic()
        current = self._latest.get(task)
        if current and now - current[1] < self.latest_ttl_seconds:
            return self._loaded[(task, current[0])]
        try:
            version = artifacts.read_latest(self.s3, bucket=self.bucket, prefix=self.prefix, task=task)
            if current and version == current[0]:
                self._latest[task] = (version, now)
                return self._loaded[(task, version)]
            loaded = self._loaded.get((task, version)) or self._fetch_unless_broken(task, version)
        except FETCH_ERRORS as exc:
            if current:
                # Keep serving the version that works; look again after the TTL.
                logger.warning("keeping %s %s: LATEST cannot be loaded: %s", task, current[0], exc)
                self._latest[task] = (current[0], now)
                return self._loaded[(task, current[0])]
            raise unavailable(task, LATEST_NAME, exc) from exc
        if current and current[0] != version:
            self._evict(task, current[0])
        self._latest[task] = (version, now)
        return loaded

    def _fetch_unless_broken(self, task: str, version: str) -> LoadedModel:
        """Fetch and load a version, unless it failed for a reason of its own less than broken_ttl_seconds ago:
        its files would be downloaded again only to fail again. Errors of S3 itself (throttling, timeouts,
        access) are not remembered: the next request tries again."""
        broken = self._broken.get((task, version))
        if broken and time.monotonic() < broken[0]:
            retry_at, exc = broken
            retry_after_s = max(1, round(retry_at - time.monotonic()))
            raise type(exc)(
                f"{exc.message} (this version failed before; tried again in {retry_after_s} s)",
                **{**exc.details, "retry_after_s": retry_after_s},
            )
        try:
            loaded = self._fetch_and_load(task, version)
        except ArtifactError as exc:
            if self.broken_ttl_seconds > 0:
                self._broken[(task, version)] = (time.monotonic() + self.broken_ttl_seconds, exc)
                exc.details["retry_after_s"] = max(1, round(self.broken_ttl_seconds))
            raise
        self._broken.pop((task, version), None)
        return loaded

    def _fetch_and_load(self, task: str, version: str) -> LoadedModel:
        started = time.perf_counter()
        manifest = artifacts.read_manifest(self.s3, bucket=self.bucket, prefix=self.prefix, task=task, version=version)
        path = self.download_verified(manifest)
        downloaded = time.perf_counter()
        try:
            model, tokenizer = load_model_dir(path, manifest, self.forward, self.quantize)
            loaded_at = time.perf_counter()
            # newsgen.gpt2 quantised it while loading; an int8 export is already quantised
            if manifest.export == "fp32" and is_transformers_model(model):
                model = optimize_for_cpu(model, self.quantize)
        except NewsgenError:
            raise
        except Exception as exc:  # transformers raises many types for a malformed checkpoint
            raise UnsupportedArtifact(f"{task} {version} is not a loadable checkpoint: {exc}") from exc
        optimized_at = time.perf_counter()
        loaded = LoadedModel(
            task=task,
            version=version,
            manifest=manifest,
            path=path,
            model=model,
            tokenizer=tokenizer,
            quantize=self.quantize,
            timings={
                "download_s": downloaded - started,
                "load_s": loaded_at - downloaded,
                "optimize_s": optimized_at - loaded_at,
            },
        )
        self._loaded[(task, version)] = loaded
        if self.on_loaded:
            self.on_loaded(loaded)
        logger.info("loaded %s %s in %.2fs", task, version, optimized_at - started, extra={"timings": loaded.timings})
        return loaded

    def download_verified(self, manifest: Manifest) -> Path:
        """Download into a private directory, verify, then rename into place: the cache never holds a
        directory that did not pass verification."""
        final = self.cache_dir / manifest.task / manifest.version
        if final.is_dir():
            try:
                verify_directory(final, manifest)
                return final
            except NewsgenError:
                shutil.rmtree(final, ignore_errors=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_space(sum(entry.size for entry in manifest.files), keep=(manifest.task, manifest.version))
        partial = self.cache_dir / manifest.task / f".{manifest.version}.{uuid.uuid4().hex[:8]}.partial"
        partial.mkdir(parents=True)
        base = artifacts.version_prefix(self.prefix, manifest.task, manifest.version)
        try:
            for entry in manifest.files:
                (partial / entry.path).parent.mkdir(parents=True, exist_ok=True)
            # The small files (config, tokenizer …) come in while the weights stream: largest first.
            files = sorted(manifest.files, key=lambda entry: -entry.size)
            with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="newsgen-fetch") as pool:
                for fetched in [
                    pool.submit(self._fetch_file, base + entry.path, partial / entry.path, entry, manifest)
                    for entry in files
                ]:
                    fetched.result()
            try:
                partial.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                # Another process sharing this cache put the same version in place first.
                verify_directory(final, manifest)
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return final

    def _fetch_file(self, key: str, target: Path, entry, manifest: Manifest, attempts: int = 3) -> None:
        """One GET per file, hashed while it is written: no second pass over the bytes to verify them, and
        no ranged parts (moto serves those slowly; on S3 a 300 MB checkpoint streams in about a second)."""
        for attempt in range(1, attempts + 1):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
                with open(target, "wb") as handle:
                    digest, size = _stream(body, handle)
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise artifacts.ArtifactNotFound(
                        f"{manifest.task} {manifest.version}: {entry.path} is listed in the manifest "
                        f"but missing from s3://{self.bucket}/{key.rsplit('/', 1)[0]}/"
                    ) from None
                raise
            except (BotoCoreError, ConnectionError):  # the stream broke after the request succeeded
                if attempt == attempts:
                    raise
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise ChecksumMismatch(
                f"{manifest.task} {manifest.version}: {entry.path} has {size} bytes with sha256 "
                f"{digest.hexdigest()[:12]}…, manifest says {entry.size} bytes with {entry.sha256[:12]}…; "
                "refusing to load a corrupt or tampered file"
            )

    def _ensure_space(self, needed: int, keep: tuple[str, str]) -> None:
        """Make room in the cache (older versions go first); refuse clearly when /tmp is too small."""
        free = shutil.disk_usage(self.cache_dir).free
        if free >= needed + self.disk_headroom_bytes:
            return
        for task_dir in self.cache_dir.iterdir():
            for version_dir in task_dir.iterdir() if task_dir.is_dir() else ():
                if (task_dir.name, version_dir.name) not in self._loaded and (task_dir.name, version_dir.name) != keep:
                    shutil.rmtree(version_dir, ignore_errors=True)
        free = shutil.disk_usage(self.cache_dir).free
        if free < needed + self.disk_headroom_bytes:
            raise ModelUnavailable(
                f"not enough space in {self.cache_dir} for {keep[0]} {keep[1]}: needs {needed / 1e6:.1f} MB, "
                f"{free / 1e6:.1f} MB free; raise the function's ephemeral storage",
                cause="insufficient_storage",
            )

    def _evict(self, task: str, version: str) -> None:
        self._loaded.pop((task, version), None)
        shutil.rmtree(self.cache_dir / task / version, ignore_errors=True)
