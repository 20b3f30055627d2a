"""`make bench`: newsgen's CPU serving against the naive transformers pipeline and CTranslate2 int8, side by
side, on the same machine and the same checkpoints, ours published through our own publish step to a local S3
and served through the public serving path (ModelStore + newsgen.generation, whatever forward the store loads).

Every engine runs in its own fresh process, so that one engine's thread pool cannot slow another's, and the
engines take turns round by round (bandwidth, naive, CTranslate2, ours int8, ours fp32; again …), so that a
noisy neighbour hits them alike. A process warms up, then times `--reps` runs per figure and reports their
median; each ratio is the median of the per-round ratios, with their spread. Each round also measures the
machine's memory bandwidth (reading a tensor larger than the cache), and each engine reports the bytes of
weights one decode step reads, from the tensors it actually serves: batch 1 decoding is memory bound, so
tokens/s × bytes/token ÷ bandwidth says how close to that floor each engine gets.

Writes bench/results.json and the README's speed section (between its bench markers), rendered from that JSON
alone (`python -m bench.run --render` renders it again from the committed JSON, with bench/cold.json's cold
starts when that file exists). Checkpoints have random weights of the real shapes (compute does not depend on
the weights); quality is measured on a tiny model trained on the All-the-News sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT.parent / "shared" / "data" / "all-the-news-sample.csv"
README = ROOT / "README.md"
COLD_JSON = ROOT / "bench" / "cold.json"  # bench/cold.py's figures (not measured here)
MARKERS = ("<!-- make bench: begin (rendered from bench/results.json) -->", "<!-- make bench: end -->")
ISA_MARKERS = {  # the README section of each capped run, and its JSON
    "avx2": ("<!-- make bench-avx2: begin (rendered from bench/results-avx2.json) -->", "<!-- make bench-avx2: end -->")
}
SHAPES = {"distilgpt2": 6, "gpt2": 12}
PROMPT = "The city council voted on Tuesday to approve the new"  # 10 tokens after <|endoftext|>
NEW_TOKENS = 64
BUCKET = "bench-models"
ENGINES = ("naive_fp32", "ctranslate2_int8", "ours_int8", "ours_fp32")
NAMES = {
    "naive_fp32": "naive pipeline fp32",
    "ctranslate2_int8": "CTranslate2 int8",
    "ours_int8": "newsgen int8",
    "ours_fp32": "newsgen fp32",
}
FIGURES = ("b1_greedy", "b1_sample", "b8_greedy")
RATIOS = {  # name: (numerator engine, denominator engine, figure, target on the distilgpt2 shape)
    "b1 greedy, ours int8 / CTranslate2 int8": ("ours_int8", "ctranslate2_int8", "b1_greedy", 1.3),
    "b8 greedy, ours int8 / CTranslate2 int8": ("ours_int8", "ctranslate2_int8", "b8_greedy", 1.3),
    "b1 greedy, ours int8 / naive fp32": ("ours_int8", "naive_fp32", "b1_greedy", 4.0),
    "b1 greedy, ours fp32 / naive fp32": ("ours_fp32", "naive_fp32", "b1_greedy", None),
}
BANDWIDTH_BYTES = 1 << 30  # read per sample: well past this VM's 480 MiB L3
# `--isa avx2`: every engine's kernels held to AVX2 on a newer CPU, through each library's own switch, to show
# whether a lead depends on AVX-512/VNNI/AMX (Lambda's x86 fleet is not one CPU). The memory system stays this
# machine's: a stand-in for an AVX2-only CPU's instruction set, not for its caches and bandwidth.
ISA_CAPS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",  # torch's int8 matmuls (quantized::linear_dynamic)
        "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (torch's fp32 Linear on x86 may take it)
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's sgemm
        "CT2_FORCE_CPU_ISA": "AVX2",  # CTranslate2
    }
}


def spread(values: list[float], digits: int = 2) -> dict:
    from bench.watermark import summary

    return summary(values, digits)


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


# --- bytes of weights one decode step reads -------------------------------------------------------------
def _tensor_bytes(value) -> int:
    """A tensor as stored (a per-channel int8 weight: 1 byte each + a scale and a zero point per channel), a
    torch.ao packed int8 Linear as its weight and bias, a tuple or list as the sum of its items."""
    import torch

    if value is None:
        return 0
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            channels = len(value.q_per_channel_scales()) if value.qscheme() == torch.per_channel_affine else 1
            return value.numel() + 8 * channels
        return value.numel() * value.element_size()
    return _tensor_bytes(torch.ops.quantized.linear_unpack(value))  # a packed int8 Linear (ScriptObject)


def torch_weight_bytes(model) -> int:
    """Bytes of weights one decode step reads at batch 1 from the tensors the model holds: every matmul weight
    (the lm_head too: with tied embeddings it reads the whole table) and norm in full, one row of each
    embedding table. A transformers module (fp32, or int8 with torch.ao's dynamic Linears), or newsgen.gpt2's
    GPT2 (its tensors held in lists, not modules)."""
    import torch

    if not isinstance(model, torch.nn.Module):  # newsgen.gpt2.GPT2
        rows = sum(t.shape[1] * t.element_size() for t in (model.wte, model.wpe))
        return rows + _tensor_bytes([model.layers, model.ln_f, model.lm_head])
    total = 0
    for module in model.modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            total += _tensor_bytes([module.weight(), module.bias()])
        elif isinstance(module, torch.nn.Embedding):
            total += module.weight.shape[1] * module.weight.element_size()
        else:
            total += _tensor_bytes(list(module.parameters(recurse=False)))
    return total


def ctranslate2_variables(model_bin: Path) -> tuple[dict, dict]:
    """CTranslate2's model.bin as written by ctranslate2.specs.ModelSpec._serialize: {name: (shape, bytes)}
    and its aliases {alias: variable}."""
    with open(model_bin, "rb") as f:

        def number(fmt: str) -> int:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return f.read(number("H"))[:-1].decode()

        number("I"), string(), number("I")  # binary version, spec name, revision
        variables = {}
        for _ in range(number("I")):
            name = string()
            shape = [number("I") for _ in range(number("B"))]
            number("B")  # dtype
            size = number("I")
            f.seek(size, 1)
            variables[name] = (shape, size)
        aliases = {string(): string() for _ in range(number("I"))}
    return variables, aliases


def ctranslate2_weight_bytes(model_bin: Path) -> int:
    """As torch_weight_bytes, from the converted model's variables: every weight in full, except one row of
    the position table and of each embedding table that no projection aliases (GPT-2's output projection is
    an alias of the int8 embeddings, so that table is read whole)."""
    variables, aliases = ctranslate2_variables(model_bin)
    read_whole = set(aliases.values())
    total = 0
    for name, (shape, size) in variables.items():
        table = name.rsplit("/", 1)[0]
        if ("embeddings" in table or "position_encodings" in table) and f"{table}/weight" not in read_whole:
            total += size // shape[0]  # one row (of the table, or of its per-row scales)
        else:
            total += size
    return total


# --- probes: each runs in a fresh process and prints one JSON line --------------------------------------
def ours(loaded, batch: int, do_sample: bool, reps: int) -> dict:
    """Generated tokens/s through newsgen.generation: one warm-up, then `reps` timed runs."""
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
    return spread(rates)


def probe_ours(version: str, cache: str, quantize: str, reps: int, figures: list[str]) -> dict:
    """Through the public serving path: ModelStore from the local S3, then newsgen.generation."""
    from newsgen import s3
    from newsgen.store import ModelStore

    store = ModelStore(s3=s3.client(), bucket=BUCKET, prefix="models", cache_dir=Path(cache), quantize=quantize)
    loaded = store.get("headline", version)
    model = loaded.model
    out = {
        "forward": f"{type(model).__module__}.{type(model).__qualname__}",
        "weight_bytes_per_token": torch_weight_bytes(model),
    }
    for figure in figures:
        batch, decoding = figure.split("_")
        out[figure] = ours(loaded, int(batch[1:]), decoding == "sample", reps)
    return out


def probe_naive(model_dir: str, reps: int) -> dict:
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model_dir, tokenizer=model_dir, device="cpu")
    text = "<|endoftext|>" + PROMPT
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False)
    pipe(text, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        pipe(text, **kwargs)
        rates.append(NEW_TOKENS / (time.perf_counter() - started))
    return {
        "forward": f"{type(pipe.model).__module__}.{type(pipe.model).__qualname__}",
        "weight_bytes_per_token": torch_weight_bytes(pipe.model),
        "b1_greedy": spread(rates),
    }


def probe_ctranslate2(model_dir: str, converted: str, threads: int, reps: int) -> dict:
    import ctranslate2
    from transformers import AutoTokenizer

    generator = ctranslate2.Generator(converted, device="cpu", compute_type="int8", intra_threads=threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("<|endoftext|>" + PROMPT)["input_ids"])

    def run(batch, length):
        return generator.generate_batch(
            [tokens] * batch, max_length=length, min_length=length, sampling_topk=1, include_prompt_in_result=False
        )

    out = {
        "version": ctranslate2.__version__,
        "weight_bytes_per_token": ctranslate2_weight_bytes(Path(converted) / "model.bin"),
    }
    for batch in (1, 8):
        run(batch, 4)  # warm-up
        rates = []
        for _ in range(reps):
            started = time.perf_counter()
            result = run(batch, NEW_TOKENS)
            rates.append(sum(len(r.sequences_ids[0]) for r in result) / (time.perf_counter() - started))
        out[f"b{batch}_greedy"] = spread(rates)
    return out


def probe_bandwidth(samples: int = 7) -> dict:
    """Memory bandwidth with torch's threads: summing a 1 GiB tensor (reads it once: what decoding does to
    its weights) and copying it (reads and writes it); GB/s, median of `samples`."""
    import torch

    source = torch.ones(BANDWIDTH_BYTES // 4)
    target = torch.empty_like(source)
    read, copy = [], []
    for _ in range(samples + 1):  # the first of each pass faults the pages in
        started = time.perf_counter()
        source.sum()
        read.append(BANDWIDTH_BYTES / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        target.copy_(source)
        copy.append(2 * BANDWIDTH_BYTES / (time.perf_counter() - started) / 1e9)
    return {"read_gb_s": statistics.median(read[1:]), "copy_gb_s": statistics.median(copy[1:])}


def probe(argv: list[str]) -> None:
    kind, args = argv[0], json.loads(argv[1])
    import torch

    torch.set_num_threads(args.pop("threads"))  # the serving path's own setting is the handlers' (Settings)
    if kind == "ctranslate2_int8":
        out = probe_ctranslate2(args["model_dir"], args["converted"], torch.get_num_threads(), args["reps"])
    elif kind == "naive_fp32":
        out = probe_naive(args["model_dir"], args["reps"])
    elif kind.startswith("ours_"):
        quantize = "int8" if kind == "ours_int8" else "none"
        out = probe_ours(args["version"], args["cache"], quantize, args["reps"], args["figures"])
    else:
        out = probe_bandwidth()
    print(json.dumps({**out, "cpu_capability": torch.backends.cpu.get_cpu_capability()}))


# --- the driver ---------------------------------------------------------------------------------------
def isa_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in set(flags) if f.startswith(("avx2", "avx512", "amx", "avx_vnni")))


def prepare_shape(shape: str, workdir: Path, figures: dict) -> dict:
    """The checkpoint, published to the local S3 (ours) and converted to CTranslate2 int8; each engine's probe
    arguments."""
    from training.publish import publish_model

    model_dir = build_checkpoint(workdir / shape, SHAPES[shape])
    version = f"bench-{shape}"
    publish_model(model_dir, bucket=BUCKET, prefix="models", task="headline", version=version, progress=False)
    args: dict = {
        "bandwidth": {},
        "naive_fp32": {"model_dir": model_dir},
        "ours_int8": {"version": version, "cache": workdir / "cache-int8", "figures": figures["ours_int8"]},
        "ours_fp32": {"version": version, "cache": workdir / "cache-fp32", "figures": figures["ours_fp32"]},
    }
    try:
        import ctranslate2

        converted = workdir / f"ct2-{shape}"
        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(
            str(converted), quantization="int8", force=True
        )
        args["ctranslate2_int8"] = {"model_dir": model_dir, "converted": converted}
    except Exception as exc:  # not installed, or the converter no longer follows transformers' internals
        args["ctranslate2_int8"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    ordered = {name: args[name] for name in ("bandwidth", *ENGINES)}  # each round's order
    return {"size_mb": round((model_dir / "model.safetensors").stat().st_size / 1e6, 1), "args": ordered}


def rounds_of(shape: str, prepared: dict, rounds: int, reps: int, threads: int, log, isa: str | None) -> dict:
    """Every engine in a fresh process, round by round; {engine: [one result per round]}."""
    from bench.forward import fresh_process

    runs: dict = {name: [] for name in prepared["args"]}
    for round_ in range(rounds):
        for name, args in prepared["args"].items():
            log(f"{shape}: round {round_ + 1}/{rounds}, {name}")
            if "skipped" in args:
                runs[name].append(args)
                continue
            load = round(os.getloadavg()[0], 2)  # the neighbours' share of the CPUs as this probe starts
            out = fresh_process("bench.run", name, {**args, "reps": reps, "threads": threads})
            if isa and out["cpu_capability"] != isa.upper():
                raise SystemExit(f"{name} ran with torch's {out['cpu_capability']} kernels, not the {isa} asked for")
            runs[name].append({**out, "load_average": load})
    return runs


def summarise(runs: dict) -> dict:
    """Per engine: each figure's per-round medians as a spread, bytes per token, and the bandwidth floor
    (tokens/s × bytes/token ÷ the round's bandwidth; at batch 8 one step reads the weights for 8 tokens);
    the per-round ratios."""
    bandwidth = [r["read_gb_s"] * 1e9 for r in runs["bandwidth"]]
    out: dict = {
        "bandwidth_gb_s": {
            "read": spread([r["read_gb_s"] for r in runs["bandwidth"]], 1),
            "copy": spread([r["copy_gb_s"] for r in runs["bandwidth"]], 1),
        },
        "engines": {},
    }
    for engine in ENGINES:
        rounds = runs.get(engine) or [{"skipped": "not measured"}]
        if "skipped" in rounds[0]:
            out["engines"][engine] = {"skipped": rounds[0]["skipped"]}
            continue
        weight_bytes = rounds[0]["weight_bytes_per_token"]
        e = {k: rounds[0][k] for k in ("forward", "version") if k in rounds[0]}
        e["weight_mb_per_token"] = round(weight_bytes / 1e6, 1)
        e["ceiling_b1_tokens_per_s"] = spread([b / weight_bytes for b in bandwidth], 1)
        for figure in FIGURES:
            if figure not in rounds[0]:
                continue
            rates = [r[figure]["median"] for r in rounds]
            batch = int(figure.split("_")[0][1:])
            e[figure] = spread(rates, 1)
            e[f"{figure}_fraction_of_bandwidth"] = spread(
                [rate / batch * weight_bytes / b for rate, b in zip(rates, bandwidth, strict=True)], 3
            )
        out["engines"][engine] = e
    out["ratios"] = {}
    for name, (numerator, denominator, figure, _) in RATIOS.items():
        if "skipped" in out["engines"][numerator] or "skipped" in out["engines"][denominator]:
            continue
        pairs = zip(runs[numerator], runs[denominator], strict=True)
        out["ratios"][name] = spread([n[figure]["median"] / d[figure]["median"] for n, d in pairs])
    return out


def targets(results: dict) -> dict:
    r = results["shapes"].get("distilgpt2")
    out = {}
    if r:
        for name, (*_, target) in RATIOS.items():
            if target is not None and name in r["ratios"]:
                out[name] = {"median": r["ratios"][name]["median"], "min": r["ratios"][name]["min"], "target": target}
    q = results.get("quality", {})
    if "relative_change" in q:
        out["int8 perplexity change"] = {"value": q["relative_change"], "target": 0.02, "lower_is_better": True}
    for item in out.values():
        value = item.get("median", item.get("value"))
        item["met"] = abs(value) <= item["target"] if item.get("lower_is_better") else value >= item["target"]
    return out


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
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every engine, interleaved (default 5)")
    parser.add_argument("--reps", type=int, default=2, help="timed runs per figure in each process (default 2)")
    parser.add_argument("--shapes", default="distilgpt2", help="distilgpt2 (default), gpt2, or both: distilgpt2,gpt2")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="each engine's threads (default: all CPUs)"
    )
    parser.add_argument("--no-quality", action="store_true", help="skip the int8 perplexity check (≈ 1 min)")
    parser.add_argument(
        "--isa",
        choices=sorted(ISA_CAPS),
        default=None,
        help="hold every engine's kernels to this instruction set (default: the CPU's best); "
        "writes bench/results-ISA.json and its own README section",
    )
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results.json (-ISA with --isa)")
    parser.add_argument("--readme", type=Path, default=README, help="the README whose speed section is rewritten")
    parser.add_argument("--render", action="store_true", help="only render the README section from --output")
    args = parser.parse_args(argv)
    args.output = args.output or ROOT / "bench" / (f"results-{args.isa}.json" if args.isa else "results.json")
    if args.render:
        update_readme(args.readme, json.loads(args.output.read_text()))
        return
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f}s] {message}", flush=True)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every probe's torch, MKL, oneDNN and CTranslate2 pool
    os.environ.update(ISA_CAPS.get(args.isa, {}))  # before torch is imported here; the probes inherit it
    import boto3

    from bench.watermark import machine
    from infra.local.harness import LOCAL_SETTINGS, start_s3

    os.environ.update(LOCAL_SETTINGS)
    results: dict = {"command": "make bench", "machine": {**machine(), "isa_flags": isa_flags()}}
    if args.isa:
        results["command"] = f"make bench-{args.isa}"
        results["machine"]["isa_cap"] = {"isa": args.isa, "environment": ISA_CAPS[args.isa]}
    results["machine"]["threads_per_engine"] = args.threads
    results["setup"] = {
        "prompt_tokens": 10,
        "new_tokens": NEW_TOKENS,
        "rounds": args.rounds,
        "reps_per_process": args.reps,
        "order": ["bandwidth", *ENGINES],
    }
    results["shapes"] = {}
    figures = {"ours_int8": list(FIGURES), "ours_fp32": ["b1_greedy"]}
    server, _ = start_s3()  # children inherit its endpoint and credentials through the environment
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="newsgen-bench-") as tmp:
            workdir = Path(tmp)
            for shape in args.shapes.split(","):
                log(f"{shape}: checkpoint, publish, CTranslate2 conversion")
                prepared = prepare_shape(shape, workdir, figures)
                runs = rounds_of(shape, prepared, args.rounds, args.reps, args.threads, log, args.isa)
                results["shapes"][shape] = {"size_mb": prepared["size_mb"], **summarise(runs), "rounds": runs}
            if not args.no_quality:
                log("quality")
                results["quality"] = quality(workdir)
    finally:
        server.stop()
    results["targets"] = targets(results)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    update_readme(args.readme, json.loads(args.output.read_text()))
    print(f"\nwrote {args.output} and {args.readme.name}'s speed section in {results['runtime_s']:.0f}s")


# --- the README's section, from the JSON alone -------------------------------------------------------------
def cell(d: dict | None, digits: int = 0) -> str:
    if not isinstance(d, dict) or "median" not in d:
        return "–"
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}–{d['max']:.{digits}f})"


def percent(d: dict | None) -> str:
    if not isinstance(d, dict) or "median" not in d:
        return "–"
    return f"{100 * d['median']:.0f} % ({100 * d['min']:.0f}–{100 * d['max']:.0f})"


def render(results: dict, cold: dict | None = None) -> str:
    m, setup = results["machine"], results["setup"]
    cap, lines = m.get("isa_cap"), []
    if cap:
        isa, switches = cap["isa"].upper(), ", ".join(f"`{k}={v}`" for k, v in cap["environment"].items())
        lines += [
            f"`{results['command']}`: every engine held to **{isa}** on this machine ({switches}); each probe "
            f"reported torch's capability as {isa}. A stand-in for an {isa}-only CPU's instruction set; caches and "
            "memory bandwidth stay this machine's.",
            "",
        ]
    lines += [
        f"Measured on **{m['cpu_model']}** (torch's CPU capability {m['cpu_capability']}; "
        f"{', '.join(m['isa_flags']) or 'no AVX2'}), {m['cores']} CPUs, {m['threads_per_engine']} thread(s) per "
        f"engine; torch {m['torch']}, transformers {m['transformers']}; load average {m['load_average_at_start'][0]} "
        f"at the start, {m['load_average_at_end'][0]} at the end. {setup['rounds']} rounds, each engine in a fresh "
        f"process per round, interleaved; {setup['reps_per_process']} timed runs per figure per process; 10-token "
        f"prompt, {setup['new_tokens']} new tokens. Generated tokens/s: median (min–max) of the rounds.",
        "",
    ]
    for shape, r in results["shapes"].items():
        bw = r["bandwidth_gb_s"]
        lines += [
            f"**{shape}** shape ({r['size_mb']:.0f} MB fp32). Memory bandwidth, reading 1 GiB: "
            f"{cell(bw['read'], 1)} GB/s (copy {cell(bw['copy'], 1)} GB/s).",
            "",
            "| engine | b1 greedy | b1 sampling | b8 greedy | weights read per step | b1 ceiling (bandwidth ÷ bytes) "
            "| b1 at % of ceiling | b8 steps at % of ceiling |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for engine in ENGINES:
            e = r["engines"][engine]
            if "skipped" in e:
                lines.append(f"| {NAMES[engine]} | skipped: {e['skipped']} |||||||")
                continue
            lines.append(
                f"| {NAMES[engine]} | {cell(e.get('b1_greedy'))} | {cell(e.get('b1_sample'))} | "
                f"{cell(e.get('b8_greedy'))} | {e['weight_mb_per_token']} MB | {cell(e['ceiling_b1_tokens_per_s'])} | "
                f"{percent(e.get('b1_greedy_fraction_of_bandwidth'))} | "
                f"{percent(e.get('b8_greedy_fraction_of_bandwidth'))} |"
            )
        lines += ["", "| per-round ratio | median (min–max) | target |", "|---|---|---|"]
        for name, d in r["ratios"].items():
            target = RATIOS[name][3] if shape == "distilgpt2" else None
            met = "" if target is None else f"≥ {target}: {'met' if d['median'] >= target else 'not met'}"
            lines.append(f"| {name} | {cell(d, 2)} | {met} |")
        forwards = {NAMES[k]: e["forward"] for k, e in r["engines"].items() if "forward" in e}
        lines += ["", "Forward served: " + "; ".join(f"{k}: `{v}`" for k, v in forwards.items()) + ".", ""]
    q = results.get("quality", {})
    if "relative_change" in q:
        lines += [
            f"Quality: int8 changes the validation perplexity of a {q['model']} from {q['val_perplexity_fp32']} to "
            f"{q['val_perplexity_int8']} ({100 * q['relative_change']:+.2f} %; target within ±2 %).",
            "",
        ]
    if not cap:
        lines += render_cold(cold)
    lines.append(f"`{results['command']}` took {results['runtime_s'] / 60:.1f} min.")
    return "\n".join(lines)


def render_cold(cold: dict | None) -> list[str]:
    """bench/cold.json's figures, rendered by bench.cold's own table() where it has one; else every
    median/min/max figure in it, by its path."""
    if cold is None:
        return ["Cold start: not measured by this run (`bench/cold.py`; no `bench/cold.json` yet).", ""]
    from bench import cold as cold_module

    if hasattr(cold_module, "table"):
        return ["Cold start (`bench/cold.json`):", "", cold_module.table(cold), ""]
    lines = ["| cold start (`bench/cold.json`) | median (min–max) |", "|---|---|"]

    def walk(value, path):
        if isinstance(value, dict) and "median" in value:
            lines.append(f"| {' / '.join(path)} | {cell(value, 2)} |")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, [*path, str(key)])

    walk(cold, [])
    return [*lines, ""]


def read_cold() -> dict | None:
    return json.loads(COLD_JSON.read_text()) if COLD_JSON.is_file() else None


def markers(results: dict) -> tuple[str, str]:
    cap = results["machine"].get("isa_cap")
    return ISA_MARKERS[cap["isa"]] if cap else MARKERS


def readme_section(readme: str, marks: tuple[str, str] = MARKERS) -> str:
    """What the README holds between a pair of bench markers."""
    start, end = readme.index(marks[0]) + len(marks[0]), readme.index(marks[1])
    return readme[start:end].strip("\n")


def update_readme(path: Path, results: dict) -> None:
    text, (begin, end_mark) = path.read_text(), markers(results)
    start, end = text.index(begin) + len(begin), text.index(end_mark)
    path.write_text(text[:start] + "\n" + render(results, read_cold()) + "\n" + text[end:])


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        probe(sys.argv[2:])
    else:
        main()
