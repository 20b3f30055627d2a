"""Our GPT-2 forward (newsgen.gpt2) against the current serving path (transformers' GPT2LMHeadModel), distilgpt2
shape: imports, load and first token in fresh processes; warm greedy tokens/s through newsgen.generation at
batch 1 and 8, fp32 and int8. Every figure comes from its own fresh process, the engines interleaved round by
round (A B A B …), so that a noisy neighbour hits them alike; each ratio is the median of the per-round ratios.

python -m bench.forward [--rounds 5]    → bench/forward.json and a markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {  # what each path imports before it can load a model
    "torch": "import torch",
    "ours": "import torch; from safetensors import safe_open; from newsgen import gpt2",
    "transformers": "import torch; from transformers import GPT2LMHeadModel",
}
ENGINES = ("transformers", "ours")
COLD = ("fp32", "int8", "fp32->int8")  # the fp32 export, the int8 export, the fp32 export quantised at load


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM:"))


# --- probes: each runs in a fresh process and prints one JSON line --------------------------------------
def load_engine(engine: str, path: Path, export: str, quantize: str):
    """The model as the store loads it today (transformers), or as newsgen.gpt2 does."""
    if engine == "ours":
        from newsgen import gpt2

        return gpt2.load(path, export, quantize)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from newsgen.optimize import load_int8, optimize_for_cpu

    if export == "int8":
        return load_int8(path / "model.int8.safetensors", AutoConfig.from_pretrained(path, local_files_only=True))
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, use_safetensors=True, dtype=torch.float32
    ).eval()
    return optimize_for_cpu(model, quantize)


def probe_cold(engine: str, path: Path, export: str, quantize: str) -> dict:
    exec(IMPORTS[engine])
    imported = time.perf_counter()
    model = load_engine(engine, path, export, quantize)
    loaded = time.perf_counter()
    import torch

    with torch.inference_mode():
        model(input_ids=torch.tensor([[50256, 464, 1748, 6553, 7052]]), use_cache=True, logits_to_keep=1)
    done = time.perf_counter()
    return {
        "import_s": imported - STARTED,
        "load_s": loaded - imported,
        "first_token_s": done - loaded,
        "total_s": done - STARTED,
        "peak_rss_mb": peak_rss_mb(),
    }


def probe_warm(engine: str, path: Path, export: str) -> dict:
    """Greedy tokens/s through newsgen.generation (bench.run's measurement: one warm-up, then timed runs)."""
    from transformers import AutoTokenizer

    from bench.run import ours as through_generation
    from newsgen import artifacts
    from newsgen.store import LoadedModel

    manifest = artifacts.build_manifest(path, task="headline", version="bench", base_model="random", export=export)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    model = load_engine(engine, path, export, "none")
    loaded = LoadedModel("headline", "bench", manifest, path, model, tokenizer)
    return {f"b{batch}": through_generation(loaded, batch, False, 1)["median"] for batch in (1, 8)}


def probe(argv: list[str]) -> None:
    kind, args = argv[0], json.loads(argv[1])
    if kind == "import":
        exec(IMPORTS[args["what"]])
        out = {"import_s": time.perf_counter() - STARTED}
    elif kind == "cold":
        out = probe_cold(args["engine"], Path(args["path"]), args["export"], args["quantize"])
    else:
        out = probe_warm(args["engine"], Path(args["path"]), args["export"])
    print(json.dumps(out))


# --- the driver ---------------------------------------------------------------------------------------
def fresh_process(module: str, kind: str, args: dict, timeout: float = 600) -> dict:
    """`python -m <module> probe <kind> <args as JSON>` in a fresh process (the layer on its path, this process's
    environment): its last line of output, as JSON. bench.run measures its engines the same way."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "newsgen"), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", module, "probe", kind, json.dumps(args, default=str)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    if out.returncode:
        raise RuntimeError(f"{module} probe {kind} {args} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_probe(kind: str, **args) -> dict:
    return fresh_process("bench.forward", kind, args)


def spread(values: list[float], digits: int = 2) -> dict:
    from bench.watermark import summary

    return summary(values, digits)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forward", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "forward.json")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="intra-op threads of each probe (default: every CPU; on a shared VM, 1 keeps a neighbour from "
        "stalling OpenMP's barriers)",
    )
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the probes' torch, MKL and oneDNN threads
    from bench.run import NEW_TOKENS, build_checkpoint
    from bench.watermark import machine
    from training.publish import stage_int8

    results = {"command": "python -m bench.forward", "machine": machine(), "rounds": args.rounds}
    results["machine"]["probe_threads"] = args.threads
    results["setup"] = {"shape": "distilgpt2 (6 x 768), random weights", "new_tokens": NEW_TOKENS, "decoding": "greedy"}
    with tempfile.TemporaryDirectory(prefix="newsgen-forward-") as tmp:
        paths = {"fp32": build_checkpoint(Path(tmp) / "fp32", 6)}
        (Path(tmp) / "int8").mkdir()
        paths["int8"] = stage_int8(paths["fp32"], Path(tmp) / "int8")
        imports, cold, warm = {w: [] for w in IMPORTS}, {}, {}
        for round_ in range(args.rounds):
            print(f"[{time.perf_counter() - STARTED:5.0f}s] round {round_ + 1}/{args.rounds}", flush=True)
            for what in IMPORTS:
                imports[what].append(run_probe("import", what=what)["import_s"])
            for variant in COLD:
                export, quantize = ("fp32", "int8") if variant == "fp32->int8" else (variant, "none")
                for engine in ENGINES:
                    out = run_probe("cold", engine=engine, path=paths[export], export=export, quantize=quantize)
                    cold.setdefault(f"{engine} {variant}", []).append(out)
            for export in ("int8", "fp32"):
                for engine in ENGINES:
                    warm.setdefault(f"{engine} {export}", []).append(
                        run_probe("warm", engine=engine, path=paths[export], export=export)
                    )
    results["imports_s"] = {what: spread(values) for what, values in imports.items()}
    results["cold"] = {
        name: {key: spread([run[key] for run in runs]) for key in runs[0]} for name, runs in cold.items()
    }
    results["warm_tokens_per_s"] = {
        name: {batch: spread([run[batch] for run in runs], 1) for batch in runs[0]} for name, runs in warm.items()
    }
    ratios = {
        "import ours / transformers": [o / t for o, t in zip(imports["ours"], imports["transformers"], strict=True)]
    }
    for variant in COLD:
        for key in ("load_s", "total_s"):
            pairs = zip(cold[f"ours {variant}"], cold[f"transformers {variant}"], strict=True)
            ratios[f"{key} ours / transformers, {variant}"] = [o[key] / t[key] for o, t in pairs]
    for export in ("int8", "fp32"):
        for batch in ("b1", "b8"):
            pairs = zip(warm[f"ours {export}"], warm[f"transformers {export}"], strict=True)
            ratios[f"tok/s ours / transformers, {export} {batch}"] = [o[batch] / t[batch] for o, t in pairs]
    results["ratios"] = {name: spread(values) for name, values in ratios.items()}
    results["runtime_s"] = round(time.perf_counter() - STARTED, 1)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.output} in {results['runtime_s']:.0f}s")


def table(results: dict) -> str:
    def cell(d, unit=""):
        return f"{d['median']}{unit} ({d['min']}–{d['max']})"

    m = results["machine"]
    lines = [
        f"{m['cpu_model']}, {m['cpu_capability']}, {m['cores']} CPUs, {m['probe_threads']} thread(s) per process; "
        f"torch {m['torch']}, transformers {m['transformers']}",
        "",
    ]
    lines += ["| fresh process | seconds |", "|---|---|"]
    lines += [f"| import {what} | {cell(d)} |" for what, d in results["imports_s"].items()]
    lines += [
        "",
        "| cold (fresh process) | import s | load s | first token s | total s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in results["cold"].items():
        lines.append(
            f"| {name} | {cell(d['import_s'])} | {cell(d['load_s'])} | {cell(d['first_token_s'])} | "
            f"{cell(d['total_s'])} | {cell(d['peak_rss_mb'])} |"
        )
    lines += ["", "| warm greedy tok/s | batch 1 | batch 8 |", "|---|---|---|"]
    lines += [f"| {name} | {cell(d['b1'])} | {cell(d['b8'])} |" for name, d in results["warm_tokens_per_s"].items()]
    lines += ["", "| per-round ratio | median (min–max) |", "|---|---|"]
    lines += [f"| {name} | {cell(d)} |" for name, d in results["ratios"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        probe(sys.argv[2:])
    else:
        main()
