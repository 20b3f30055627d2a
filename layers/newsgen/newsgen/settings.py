"""Runtime settings, from environment variables, validated once: the one model that the handlers read. The
service reads the models', the store's, the watermark's and the time budget's; the rest (preload, threads,
body size, batch sizing) are the handlers' to act on."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsgen.artifacts import Forward, Quantize


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", protected_namespaces=())

    model_bucket: str = Field(
        "", description="S3 bucket holding the published models, or file:///path to a mirror of it (baked images)."
    )
    model_prefix: str = Field("models", description="Key prefix of the model artifacts in the bucket.")
    headline_model_version: str = Field("LATEST", description="Pinned headline version, or LATEST.")
    article_model_version: str = Field("LATEST", description="Pinned article version, or LATEST.")
    model_cache_dir: Path = Path("/tmp/newsgen/models")
    latest_ttl_seconds: float = Field(300.0, ge=0, description="How often a warm container re-reads LATEST.")
    broken_version_ttl_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a version that failed to load (a file missing, corrupt, unsafe or "
        "unsupported) is answered with its error at once instead of being downloaded again; 0 = always retry.",
    )
    preload_models: bool = Field(False, description="Load the models when the handler starts (Lambda's init phase).")
    quantize: Quantize = Field(
        "int8",
        description="int8: every matmul in int8 (CPU serving). Artifacts published with --export int8 "
        "are served as published.",
    )
    serving_forward: Forward = Field(
        "newsgen",
        description="newsgen: GPT-2's forward on torch alone (newsgen.gpt2; a cold start without transformers' "
        "imports). transformers: GPT2LMHeadModel, the reference and fallback. Beam search always runs "
        "transformers' generate(), on a transformers model loaded for it on first use.",
    )
    init_budget_seconds: float = Field(
        9.0,
        ge=0,
        description="Seconds after the runtime process started by which an on-demand Lambda init hands "
        "over, preloaded or not (Lambda restarts an init that passes 10 s); loading then finishes in the background "
        "while the first request waits.",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Default: in Lambda, one per vCPU its memory buys (rounded); elsewhere "
        "the CPUs this process may use.",
    )
    max_body_bytes: int = Field(16 * 1024, ge=256)
    time_margin_ms: int = Field(1500, ge=0, description="Kept free before a request's deadline.")
    default_time_budget_ms: int = Field(25_000, ge=100, description="Time budget of a request given no deadline.")
    log_prompts: bool = False
    watermark: bool = Field(
        True,
        description="Watermark every generated text (newsgen.watermark). false only for research use: "
        "a deployment setting; no request can turn it off.",
    )
    watermark_bias: float = Field(
        4.0,
        ge=0.5,
        le=10,
        description="Logit bias of green tokens: higher is easier to detect and further from "
        "the model's own choices; detection does not depend on it. Models with more varied text than the demo "
        "ones are detectable at 2.0 (make bench-watermark).",
    )
    watermark_keys_secret: str = Field(
        "",
        description="Secrets Manager secret (ARN or name) holding the seed the stack generated, or a keyring "
        "(deployed; read before the parameter).",
    )
    watermark_keys_parameter: str = Field("", description="SSM SecureString parameter holding the keyring (deployed).")
    watermark_keys_file: Path | None = Field(None, description="A local keyring file, created on first use.")
    # Batch jobs. A chunk is at most this many lines and this many tokens of generation (n × max_new_tokens
    # × beams, 256 where unset): 16,384 tokens take about 150 s at the 110 tok/s that batch-1 decoding ran
    # at 2048 MB (bench/power.json), a sixth of the worker's 900 s timeout.
    batch_queue_url: str = Field("", description="The chunk queue (dispatcher, redrive).")
    results_bucket: str = Field("", description="The batch bucket (where unreadable dead letters are kept).")
    batch_chunk_lines: int = Field(50, ge=1, le=10_000)
    batch_chunk_tokens: int = Field(16_384, ge=256)
    batch_worker_margin_s: float = Field(
        10.0, ge=0, description="Kept free before the worker's deadline to write the chunk's output."
    )


def load_settings() -> Settings:
    return Settings()
