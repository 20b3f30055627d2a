"""`make bench`: newsgen's CPU serving against the naive transformers pipeline and CTranslate2 int8, side by
side, on the same machine and the same checkpoints, published through our own publish step to a local S3.

Writes bench/results.json and prints the markdown table that README.md shows. Checkpoints have random weights
of the real shapes (compute does not depend on the weights); quality is measured on a tiny model trained on
the All-the-News sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT.parent / "shared" / "data" / "all-the-news-sample.csv"
SHAPES = {"distilgpt2": 6, "gpt2": 12}
PROMPT = "The city council voted on Tuesday to approve the new"  # 10 tokens after <|endoftext|>
NEW_TOKENS = 64
BUCKET = "bench-models"


def summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "runs": [round(v, 2) for v in values],
    }


# --- checkpoints --------------------------------------------------------------------------------------
def build_checkpoint(path: Path, layers: int) -> Path:
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from training.tokenizer import base_tokenizer

    tokenizer = base_tokenizer("tiny")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=layers,
        n_embd=768,
        n_head=12,
        n_positions=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=NEW_TOKENS,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "training_report.json").write_text(json.dumps({"task": "headline", "base_model": f"random-{layers}x768"}))
    return path


# --- warm throughput ----------------------------------------------------------------------------------
def ours(loaded, batch: int, do_sample: bool, reps: int) -> dict:
    from newsgen import generation, prompt
    from newsgen.schemas import GenerationParameters

    params = GenerationParameters(
        max_new_tokens=NEW_TOKENS,
        do_sample=do_sample,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        **({"seed": 1, "top_k": 50} if do_sample else {}),
    )
    prompts = [prompt.headline_prompt(PROMPT)] * batch
    generation.generate(loaded, prompts, params=params.model_copy(update={"max_new_tokens": 4}))  # warm-up
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        out = generation.generate(loaded, prompts, params=params)
        elapsed = time.perf_counter() - started
        rates.append(sum(r.generated_tokens for rows in out.results for r in rows) / elapsed)
    return summary(rates)


def naive(model_dir: Path, reps: int) -> dict:
    from transformers import pipeline

    pipe = pipeline("text-generation", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    text = "<|endoftext|>" + PROMPT
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False)
    pipe(text, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        pipe(text, **kwargs)
        rates.append(NEW_TOKENS / (time.perf_counter() - started))
    return summary(rates)


def ctranslate2_int8(model_dir: Path, workdir: Path, reps: int) -> dict:
    try:
        import ctranslate2
    except ImportError as exc:
        return {"skipped": f"ctranslate2 is not installed: {exc}"}
    from transformers import AutoTokenizer

    out = workdir / f"ct2-{model_dir.name}"
    try:
        started = time.perf_counter()
        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(str(out), quantization="int8", force=True)
        convert_s = time.perf_counter() - started
    except Exception as exc:  # the converter follows transformers' internals; report, do not crash the bench
        return {"skipped": f"conversion failed: {type(exc).__name__}: {exc}"}
    generator = ctranslate2.Generator(
        str(out), device="cpu", compute_type="int8", intra_threads=len(os.sched_getaffinity(0))
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("<|endoftext|>" + PROMPT)["input_ids"])

    def run(batch, length):
        return generator.generate_batch(
            [tokens] * batch, max_length=length, min_length=length, sampling_topk=1, include_prompt_in_result=False
        )

    run(1, 4)
    result = {"convert_s": round(convert_s, 2)}
    for batch in (1, 8):
        rates = []
        for _ in range(reps):
            started = time.perf_counter()
            out_tokens = run(batch, NEW_TOKENS)
            rates.append(sum(len(r.sequences_ids[0]) for r in out_tokens) / (time.perf_counter() - started))
        result[f"b{batch}_greedy"] = summary(rates)
    return result


# --- cold start ---------------------------------------------------------------------------------------
def cold(mode: str, version: str, workdir: Path, reps: int, quantize: str = "int8") -> list[dict]:
    runs = []
    for i in range(reps):
        args = [sys.executable, "-m", "bench.cold", mode, "--bucket", BUCKET, "--version", version]
        if mode == "serve":
            args += ["--cache", str(workdir / f"cache-{version}-{mode}-{i}"), "--quantize", quantize]
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=os.environ, timeout=300)
        if out.returncode:
            raise RuntimeError(f"bench.cold {mode} failed: {out.stderr[-2000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


# --- quality ------------------------------------------------------------------------------------------
def quality(workdir: Path) -> dict:
    if not SAMPLE_CSV.is_file():
        return {"skipped": f"{SAMPLE_CSV} is absent"}
    from newsgen import artifacts
    from newsgen.optimize import quantize_int8
    from newsgen.store import load_model_dir
    from training.evaluate import perplexity
    from training.prepare import prepare
    from training.train import TrainOptions, train

    data = workdir / "quality-data"
    prepare([SAMPLE_CSV], data, progress=False)
    model_dir = workdir / "quality-model"
    train(
        TrainOptions(
            task="headline",
            data=data,
            output=model_dir,
            max_steps=120,
            eval_steps=40,
            save_steps=120,
            logging_steps=20,
            batch_size=16,
            max_length=48,
            progress=False,
        )
    )
    manifest = artifacts.build_manifest(model_dir, task="headline", version="q", base_model="tiny")
    model, tokenizer = load_model_dir(model_dir, manifest)
    fp32 = perplexity(model, tokenizer, data, "headline", max_length=48)
    int8 = perplexity(quantize_int8(model), tokenizer, data, "headline", max_length=48)
    return {
        "model": "tiny (2x128), 120 steps on the sample",
        "val_perplexity_fp32": round(fp32, 3),
        "val_perplexity_int8": round(int8, 3),
        "relative_change": round((int8 - fp32) / fp32, 4),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shapes", default="distilgpt2,gpt2")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    import torch

    from infra.local.harness import LOCAL_SETTINGS, start_s3

    os.environ.update(LOCAL_SETTINGS)
    server, _ = start_s3()
    started = time.perf_counter()
    try:
        import boto3

        from newsgen import s3
        from newsgen.store import ModelStore
        from training.publish import publish_model

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        results = {
            "command": "make bench",
            "machine": {
                "cpus": len(os.sched_getaffinity(0)),
                "processor": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "setup": {"prompt_tokens": 10, "new_tokens": NEW_TOKENS, "reps": args.reps},
            "shapes": {},
        }
        with tempfile.TemporaryDirectory(prefix="newsgen-bench-") as tmp:
            workdir = Path(tmp)
            for shape in args.shapes.split(","):
                print(f"[{time.perf_counter() - started:5.0f}s] {shape}: checkpoint + publish", flush=True)
                model_dir = build_checkpoint(workdir / shape, SHAPES[shape])
                version = f"bench-{shape}"
                publish_model(
                    model_dir, bucket=BUCKET, prefix="models", task="headline", version=version, progress=False
                )
                r: dict = {"size_mb": round((model_dir / "model.safetensors").stat().st_size / 1e6, 1)}
                print(f"[{time.perf_counter() - started:5.0f}s] {shape}: warm (ours int8, fp32)", flush=True)
                store = ModelStore(
                    s3=s3.client(), bucket=BUCKET, prefix="models", cache_dir=workdir / "warm-int8", quantize="int8"
                )
                loaded = store.get("headline", version)
                r["ours_int8"] = {
                    "b1_greedy": ours(loaded, 1, False, args.reps),
                    "b1_sample": ours(loaded, 1, True, args.reps),
                    "b8_greedy": ours(loaded, 8, False, args.reps),
                }
                del store, loaded
                store = ModelStore(
                    s3=s3.client(), bucket=BUCKET, prefix="models", cache_dir=workdir / "warm-fp32", quantize="none"
                )
                r["ours_fp32"] = {"b1_greedy": ours(store.get("headline", version), 1, False, args.reps)}
                del store
                print(f"[{time.perf_counter() - started:5.0f}s] {shape}: naive pipeline fp32", flush=True)
                r["naive_pipeline_fp32"] = {"b1_greedy": naive(model_dir, args.reps)}
                print(f"[{time.perf_counter() - started:5.0f}s] {shape}: ctranslate2 int8", flush=True)
                r["ctranslate2_int8"] = ctranslate2_int8(model_dir, workdir, args.reps)
                print(f"[{time.perf_counter() - started:5.0f}s] {shape}: cold starts", flush=True)
                r["cold_serve"] = cold("serve", version, workdir, args.reps)
                r["cold_floor"] = cold("floor", version, workdir, args.reps)
                print(f"[{time.perf_counter() - started:5.0f}s] {shape}: cold starts, int8 export", flush=True)
                exported = publish_model(
                    model_dir,
                    bucket=BUCKET,
                    prefix="models",
                    task="headline",
                    version=f"{version}-int8",
                    export="int8",
                    progress=False,
                )
                r["int8_export_mb"] = round(
                    sum(f.size for f in exported.files if f.path.endswith(".safetensors")) / 1e6, 1
                )
                r["cold_serve_int8_export"] = cold("serve", exported.version, workdir, args.reps)
                r["cold_floor_int8_export"] = cold("floor", exported.version, workdir, args.reps)
                results["shapes"][shape] = r
            print(f"[{time.perf_counter() - started:5.0f}s] quality", flush=True)
            results["quality"] = quality(workdir)
        results["targets"] = targets(results)
        results["runtime_s"] = round(time.perf_counter() - started, 1)
    finally:
        server.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.output} in {results['runtime_s']:.0f}s")


def targets(results: dict) -> dict:
    out = {}
    r = results["shapes"].get("distilgpt2")
    if not r:
        return out
    ours_b1 = r["ours_int8"]["b1_greedy"]["median"]
    out["warm_b1_vs_naive"] = {
        "ratio": round(ours_b1 / r["naive_pipeline_fp32"]["b1_greedy"]["median"], 2),
        "target": 4.0,
    }
    ct2 = r["ctranslate2_int8"]
    if "b1_greedy" in ct2:
        out["warm_b1_vs_ctranslate2"] = {"ratio": round(ours_b1 / ct2["b1_greedy"]["median"], 2), "target": 1.15}
    out["batch8_vs_batch1"] = {"ratio": round(r["ours_int8"]["b8_greedy"]["median"] / ours_b1, 2), "target": 5.0}
    cold_total = statistics.median(c["total_s"] for c in r["cold_serve"])
    floor_total = statistics.median(c["total_s"] for c in r["cold_floor"])
    out["cold_vs_floor"] = {"ratio": round(cold_total / floor_total, 2), "target": 1.5, "lower_is_better": True}
    if "cold_serve_int8_export" in r:  # the same, with the weights published as int8 (publish --export int8)
        export_total = statistics.median(c["total_s"] for c in r["cold_serve_int8_export"])
        export_floor = statistics.median(c["total_s"] for c in r["cold_floor_int8_export"])
        out["cold_vs_floor_int8_export"] = {
            "ratio": round(export_total / export_floor, 2),
            "target": 1.5,
            "lower_is_better": True,
        }
    out["peak_rss_gb"] = {
        "value": round(max(c["peak_rss_mb"] for c in r["cold_serve"]) / 1024, 3),
        "target": 1.0,
        "lower_is_better": True,
    }
    q = results.get("quality", {})
    if "relative_change" in q:
        out["int8_perplexity_change"] = {"value": q["relative_change"], "target": 0.02, "lower_is_better": True}
    for item in out.values():
        value = item.get("ratio", item.get("value"))
        item["met"] = abs(value) <= item["target"] if item.get("lower_is_better") else value >= item["target"]
    return out


def table(results: dict) -> str:
    lines = [
        "| shape | newsgen int8 b1 greedy | b1 sampling | b8 greedy | newsgen fp32 b1 | naive pipeline fp32 b1 | CTranslate2 int8 b1 | CTranslate2 int8 b8 | cold start (floor) | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(d):
        return (
            f"{d['median']:.0f} ({d['min']:.0f}–{d['max']:.0f})" if isinstance(d, dict) and "median" in d else "skipped"
        )

    for shape, r in results["shapes"].items():
        ct2 = r["ctranslate2_int8"]
        cold_s = statistics.median(c["total_s"] for c in r["cold_serve"])
        floor_s = statistics.median(c["total_s"] for c in r["cold_floor"])
        cold = f"{cold_s:.2f} s ({floor_s:.2f} s)"
        if "cold_serve_int8_export" in r:
            export_s = statistics.median(c["total_s"] for c in r["cold_serve_int8_export"])
            export_floor_s = statistics.median(c["total_s"] for c in r["cold_floor_int8_export"])
            cold += f"; int8 export {export_s:.2f} s ({export_floor_s:.2f} s)"
        rss = max(c["peak_rss_mb"] for c in r["cold_serve"])
        lines.append(
            f"| {shape} | {cell(r['ours_int8']['b1_greedy'])} | {cell(r['ours_int8']['b1_sample'])} | "
            f"{cell(r['ours_int8']['b8_greedy'])} | {cell(r['ours_fp32']['b1_greedy'])} | "
            f"{cell(r['naive_pipeline_fp32']['b1_greedy'])} | {cell(ct2.get('b1_greedy'))} | {cell(ct2.get('b8_greedy'))} | "
            f"{cold} | {rss:.0f} MB |"
        )
    lines.append("")
    lines.append("Throughput in generated tokens/s, median (min–max) of the runs; 10-token prompt, 64 new tokens.")
    lines.append("")
    lines.append("| target (distilgpt2 shape) | measured | target | met |")
    lines.append("|---|---|---|---|")
    for name, item in results.get("targets", {}).items():
        value = item.get("ratio", item.get("value"))
        lines.append(
            f"| {name} | {value} | {'≤' if item.get('lower_is_better') else '≥'} {item['target']} | {'yes' if item['met'] else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
