"""Export a trained model directory as a versioned artifact in S3 (the contract in newsgen.artifacts)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from newsgen import artifacts, s3
from newsgen.artifacts import EXPORTS, Manifest
from newsgen.errors import NewsgenError


def model_card(model_dir: Path, task: str, version: str, report: dict) -> str:
    metrics = {k: report.get(k) for k in ("val_perplexity", "eval_loss", "train_loss", "global_step")}
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    return f"""# newsgen {task} model {version}

GPT-2 fine-tuned by newsgen to write news {"headlines" if task == "headline" else "article openings for a headline"}.
Base model: `{report.get("base_model", "unknown")}`. Data fingerprint: `{report.get("data_fingerprint")}`.

> **Synthetic text warning.** Everything this model writes is machine-generated. It imitates the style of news
> and is not news: names, events, numbers and quotes are invented or wrong. Label every output as synthetic.

| metric | value |
|---|---|
{rows}

Prompt format: `<|endoftext|>` + headline + {"`<|EOS|>`" if task == "headline" else "`<|SEP|>` + article + `<|EOS|>`"}.
Weights: safetensors only. Decoding defaults: `generation_config.json`.
"""


def stage_int8(model_dir: Path, staging: Path) -> Path:
    """The files of an int8 export: the model's, with its fp32 weights replaced by the int8 model the server
    would build at load (newsgen.optimize), so a container loads it without quantising. A directory that holds
    an int8 export already (the shipped demo models) is taken as it is."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from newsgen.optimize import int8_tensors, quantize_int8

    exported = (model_dir / artifacts.INT8_WEIGHTS).is_file() and not (model_dir / "model.safetensors").is_file()
    for pattern in artifacts.ARTIFACT_PATTERNS:
        for file in model_dir.glob(pattern):
            if file.is_file() and (exported or not file.name.startswith("model")):
                shutil.copy2(file, staging / file.name)
    if exported:
        return staging
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
    save_file(
        int8_tensors(quantize_int8(model.eval())),
        str(staging / artifacts.INT8_WEIGHTS),
        metadata={"format": "pt", "newsgen_export": "int8"},
    )
    return staging


def publish_model(
    model_dir: Path,
    *,
    bucket: str,
    prefix: str,
    task: str,
    version: str | None = None,
    export: str = "fp32",
    move_latest: bool = True,
    progress: bool = True,
) -> Manifest:
    model_dir = Path(model_dir)
    if export not in EXPORTS:
        raise ValueError(f"--export {export} is not available; choose one of {', '.join(EXPORTS)}")
    report_path = model_dir / "training_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if report.get("task", task) != task:
        raise ValueError(f"{model_dir} was trained for the {report['task']} task, not {task}")
    version = version or artifacts.new_version_name()
    with tempfile.TemporaryDirectory(prefix="newsgen-export-") as staging:
        source = model_dir if export == "fp32" else stage_int8(model_dir, Path(staging))
        (source / "README.md").write_text(model_card(model_dir, task, version, report))
        manifest = artifacts.build_manifest(
            source,
            task=task,
            version=version,
            base_model=report.get("base_model", "unknown"),
            metrics={k: report[k] for k in ("val_perplexity", "eval_loss", "train_loss", "global_step") if k in report},
            data_fingerprint=report.get("data_fingerprint"),
            export=export,
        )
        total = sum(entry.size for entry in manifest.files)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=f"publish {task} {version} ({export})", disable=not progress
        ) as bar:
            return artifacts.publish(
                s3.client(),
                source,
                bucket=bucket,
                prefix=prefix,
                manifest=manifest,
                move_latest=move_latest,
                progress=bar.update,
            )


def published_versions(client, *, bucket: str, prefix: str, task: str) -> dict:
    """A task's versions in the bucket, oldest first, each with its created_at, export and metrics, and which
    one LATEST names. A version without a manifest (its publish was interrupted) is listed as incomplete."""
    try:
        latest = artifacts.read_latest(client, bucket=bucket, prefix=prefix, task=task)
    except artifacts.ArtifactNotFound:
        latest = None
    found = []
    for name in artifacts.list_versions(client, bucket=bucket, prefix=prefix, task=task):
        try:
            manifest = artifacts.read_manifest(client, bucket=bucket, prefix=prefix, task=task, version=name)
        except artifacts.ArtifactNotFound:
            found.append({"version": name, "latest": name == latest, "status": "incomplete (no manifest)"})
            continue
        except NewsgenError as exc:  # a manifest this build cannot read: listed, with why
            found.append({"version": name, "latest": name == latest, "status": f"unreadable: {exc.message}"})
            continue
        found.append(
            {
                "version": name,
                "latest": name == latest,
                "created_at": manifest.created_at,
                "export": manifest.export,
                "base_model": manifest.base_model,
                "metrics": manifest.metrics,
            }
        )
    found.sort(key=lambda entry: (entry.get("created_at") is None, entry.get("created_at") or "", entry["version"]))
    return {"bucket": bucket, "prefix": prefix, "task": task, "latest": latest, "versions": found}
