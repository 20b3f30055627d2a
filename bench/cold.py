"""One cold start, in a fresh process, as a Lambda init + first request sees it. Prints one JSON line.

python -m bench.cold serve --bucket B --version V --cache DIR     (our handler's path: store, first token)
python -m bench.cold floor --bucket B --version V                 (the floor: torch, safetensors and tokenizers
                                                                    imported, the raw S3 bytes, the tensors, the
                                                                    tokenizer; nothing of ours, no transformers)
python -m bench.cold run [--rounds 5] [--forward newsgen]         (`make bench-cold`: a distilgpt2-shaped int8
                                                                    export in a local S3, serve and floor
                                                                    interleaved round by round in fresh processes
                                                                    → bench/cold.json)
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()


def mark(timings: dict, name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - since, 4)
    return now


def peak_rss_mb() -> float:
    """VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def serve(bucket: str, version: str, cache: str, quantize: str, forward: str = "newsgen") -> dict:
    t: dict = {}
    import torch  # noqa: F401

    from newsgen import generation, prompt, s3
    from newsgen.schemas import GenerationParameters
    from newsgen.store import ModelStore
    from newsgen.watermark import GreenlistWatermark

    now = mark(t, "imports_s", started)
    store = ModelStore(
        s3=s3.client(), bucket=bucket, prefix="models", cache_dir=cache, quantize=quantize, forward=forward
    )
    loaded = store.get("headline", version)
    t.update({k: round(v, 4) for k, v in loaded.timings.items()})
    now = mark(t, "store_s", now)
    mark_ = GreenlistWatermark(int(loaded.model.config.vocab_size), key=1234)  # as the API marks every text
    generation.generate(
        loaded,
        [prompt.headline_prompt("The")],
        params=GenerationParameters(max_new_tokens=1, do_sample=False),
        watermark=mark_,
    )
    now = mark(t, "first_token_s", now)
    t["total_s"] = round(now - started, 4)
    t["transformers_imported"] = any(m.split(".")[0] == "transformers" for m in sys.modules)
    # Then serve like a warm container (batch of 8, 64 tokens) so that the peak RSS covers generation too.
    generation.generate(
        loaded,
        [prompt.headline_prompt("The")] * 8,
        params=GenerationParameters(max_new_tokens=64, do_sample=False),
        watermark=mark_,
    )
    return t


def floor(bucket: str, version: str) -> dict:
    t: dict = {}
    import tokenizers
    import torch  # noqa: F401
    from safetensors.torch import load

    now = mark(t, "imports_s", started)
    from newsgen import artifacts, s3

    client = s3.client()
    manifest = artifacts.read_manifest(client, bucket=bucket, prefix="models", task="headline", version=version)
    blobs = {
        e.path: client.get_object(Bucket=bucket, Key=artifacts.version_prefix("models", "headline", version) + e.path)[
            "Body"
        ].read()
        for e in manifest.files
    }
    now = mark(t, "s3_read_s", now)
    load(blobs["model.safetensors" if manifest.export == "fp32" else artifacts.INT8_WEIGHTS])
    now = mark(t, "safetensors_load_s", now)
    tokenizers.Tokenizer.from_buffer(blobs["tokenizer.json"])
    now = mark(t, "tokenizer_load_s", now)
    t["total_s"] = round(now - started, 4)
    return t


# --- `make bench-cold` ----------------------------------------------------------------------------------
def probe(args: list[str], env: dict) -> dict:
    import subprocess

    from bench.run import ROOT

    out = subprocess.run(
        [sys.executable, "-m", "bench.cold", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    if out.returncode:
        raise RuntimeError(f"bench.cold {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(argv: list[str]) -> None:
    import argparse
    import os
    import statistics
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bench.cold run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--forward", choices=("newsgen", "transformers"), default="newsgen")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    import boto3

    from bench.run import BUCKET, ROOT, build_checkpoint
    from bench.watermark import machine, summary
    from infra.local.harness import LOCAL_SETTINGS, start_s3
    from training.publish import publish_model

    output = args.output or ROOT / "bench" / ("cold.json" if args.forward == "newsgen" else f"cold-{args.forward}.json")
    os.environ.update(LOCAL_SETTINGS)
    server, _ = start_s3()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "newsgen"), str(ROOT)])}
    results: dict = {"command": f"python -m bench.cold run --forward {args.forward}", "machine": machine()}
    results["setup"] = {
        "shape": "distilgpt2 (6 x 768), random weights, published with --export int8 to a local S3 (moto)",
        "forward": args.forward,
        "rounds": args.rounds,
        "serve": "fresh process → ModelStore.get → first greedy token with the watermark on",
        "floor": "fresh process → import torch, safetensors, tokenizers → S3 bytes → tensors → tokenizer",
    }
    runs: dict[str, list[dict]] = {"serve": [], "floor": []}
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="newsgen-cold-") as tmp:
            model_dir = build_checkpoint(Path(tmp) / "distilgpt2", 6)
            version = publish_model(
                model_dir,
                bucket=BUCKET,
                prefix="models",
                task="headline",
                version="cold-int8",
                export="int8",
                progress=False,
            ).version
            for i in range(args.rounds):
                print(f"[{time.perf_counter() - started:5.0f}s] round {i + 1}/{args.rounds}", flush=True)
                common = ["--bucket", BUCKET, "--version", version]
                cache = ["--cache", str(Path(tmp) / f"cache-{i}"), "--forward", args.forward]
                runs["serve"].append(probe(["serve", *common, *cache], env))
                runs["floor"].append(probe(["floor", *common], env))
    finally:
        server.stop()
    results["serve"] = {
        k: summary([r[k] for r in runs["serve"]]) for k in runs["serve"][0] if k != "transformers_imported"
    }
    results["serve"]["transformers_imported"] = any(r["transformers_imported"] for r in runs["serve"])
    results["floor"] = {k: summary([r[k] for r in runs["floor"]]) for k in runs["floor"][0]}
    ratios = [s["total_s"] / f["total_s"] for s, f in zip(runs["serve"], runs["floor"], strict=True)]
    peak_gb = max(r["peak_rss_mb"] for r in runs["serve"]) / 1024
    results["targets"] = {
        "cold_vs_floor": {**summary(ratios, 2), "target": 1.5, "met": statistics.median(ratios) <= 1.5},
        "peak_rss_gb": {"value": round(peak_gb, 3), "target": 0.8, "met": peak_gb <= 0.8},
    }
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    output.write_text(json.dumps(results, indent=2) + "\n")
    s, f = results["serve"], results["floor"]
    print(
        f"{results['machine']['cpu_model']} ({results['machine']['cpu_capability']}), forward {args.forward}: "
        f"cold {s['total_s']['median']:.2f} s (imports {s['imports_s']['median']:.2f}, store "
        f"{s['store_s']['median']:.2f}, first token {s['first_token_s']['median']:.3f}) against the floor "
        f"{f['total_s']['median']:.2f} s: {results['targets']['cold_vs_floor']['median']:.2f}x (target 1.5); "
        f"peak RSS {peak_gb:.2f} GB (target 0.8)\nwrote {output}"
    )


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "run"
    if mode == "run":
        run(sys.argv[2:])
        sys.exit()
    args = dict(zip(sys.argv[2::2], sys.argv[3::2], strict=False))
    if mode == "serve":
        out = serve(
            args["--bucket"],
            args["--version"],
            args["--cache"],
            args.get("--quantize", "int8"),
            args.get("--forward", "newsgen"),
        )
    else:
        out = floor(args["--bucket"], args["--version"])
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
