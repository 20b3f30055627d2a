"""`make bench-watermark`: how well the green-list watermark (newsgen.watermark) is detected, how often human
news is flagged, how it survives edits, what it costs, and SynthID-Text measured beside it (issue 12).

Writes bench/watermark.json and prints the markdown table for the README. Detection is newsgen's own
`Detector` (its Z_THRESHOLD and MIN_TOKENS; rates at z >= 3 and 4 are in the JSON). The keys are fresh random
ones (everything else is seeded), so the figures move from run to run: little on the All-the-News model, a
lot on the templated demo models, whose texts share their n-grams, so that one key's draw shifts them all.
Generation is the served path: newsgen.generation.generate
on the int8 models with the models' default decoding (sampling). To reach 200 tokens the bench-only model
wrapper `NoEOS` takes the end token out of the model's logits (before every logits processor), so texts run on;
every text is then cut to 25/50/100/200 tokens of its own re-tokenised text. Speed is measured on the
distilgpt2 shape (6x768) with random weights, int8, as `make bench` does.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT.parent / "shared" / "data" / "all-the-news-sample.csv"
WORKDIR = ROOT / ".newsgen" / "demo"  # where `make run` keeps the demo models
LENGTHS = (25, 50, 100, 200)
GEN_TOKENS = 210  # a margin over 200: re-tokenising the decoded text can give a few tokens fewer
NYT_SUFFIX = " - The New York Times"
SEED = 20240612
THRESHOLDS = (3.0, 4.0)  # rates at both (the library's is one of them)
SYNTHID = {"ngram_len": 5, "depth": 20, "sampling_table_size": 2**16, "context_history_size": 1024}

started = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - started:6.0f}s] {message}", flush=True)


# --- statistics ---------------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def rate_cell(detections: list, excluded_short: int = 0, positive: bool = True) -> dict:
    """One cell: detections of N texts. too_short counts as not detected (it is not flagged either)."""
    n = len(detections)
    flagged = sum(1 for d in detections if d.watermarked)
    too_short = sum(1 for d in detections if d.verdict == "too_short")
    zs = [d.score for d in detections if d.score is not None]
    scored = [d.tokens_scored for d in detections]
    cell = {
        "n": n,
        ("detected" if positive else "false_positives"): flagged,
        ("tpr" if positive else "fpr"): round(flagged / n, 4) if n else None,
        "ci95": wilson(flagged, n),
        "too_short": too_short,
    }
    if excluded_short:
        cell["excluded_shorter_than_length"] = excluded_short
    judged = [d.score for d in detections if d.verdict != "too_short"]
    cell["rate_by_z_threshold"] = {str(t): round(sum(z >= t for z in judged) / n, 4) if n else None for t in THRESHOLDS}
    if zs:
        cell["z"] = {
            "mean": round(statistics.fmean(zs), 3),
            "median": round(statistics.median(zs), 3),
            "std": round(statistics.pstdev(zs), 3),
            "min": round(min(zs), 3),
            "max": round(max(zs), 3),
        }
    if scored:
        cell["tokens_scored_median"] = statistics.median(scored)
    return cell


def summary(values: list[float], digits: int = 4) -> dict:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


# --- machine --------------------------------------------------------------------------------------------
def machine() -> dict:
    import torch
    import transformers

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), None
        )
    except (OSError, subprocess.SubprocessError):
        model = None
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- models -----------------------------------------------------------------------------------------------
class NoEOS:
    """Bench only: the wrapped model never ends a text (the end token's logit is -inf before any processor),
    so that sampled texts reach 200 tokens. Everything generate() reads from a model is passed through."""

    def __init__(self, model, eos: int):
        self.model, self.eos = model, eos

    def __getattr__(self, name: str):  # config, generation_config, device, new_cache …
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        out = self.model(**kwargs)
        out.logits[..., self.eos] = float("-inf")
        return out


def prompts_of(loaded, texts: list[str]) -> list[str]:
    """The model's prompts in its own prompt format (a model reused from an earlier run may be format 1)."""
    from newsgen import prompt

    return prompt.prompts_for(loaded.task, texts, loaded.manifest.prompt_format)


def load_tiny(path: Path, task: str):
    """(int8 LoadedModel as served, fp32 model for scoring, training report)."""
    from newsgen import artifacts
    from newsgen.optimize import optimize_for_cpu
    from newsgen.store import LoadedModel, load_model_dir

    manifest = artifacts.build_manifest(path, task=task, version="bench", base_model="tiny")
    fp32, tokenizer = load_model_dir(path, manifest)
    int8, _ = load_model_dir(path, manifest)
    int8 = optimize_for_cpu(int8, "int8")
    report = json.loads((path / "training_report.json").read_text())
    return LoadedModel(task, "bench", manifest, path, int8, tokenizer), fp32, report


def no_eos(loaded):
    from newsgen.store import LoadedModel

    return LoadedModel(
        loaded.task,
        loaded.version,
        loaded.manifest,
        loaded.path,
        NoEOS(loaded.model, loaded.tokenizer.eos_token_id),
        loaded.tokenizer,
    )


def generate_texts(
    loaded, prompts: list[str], *, seed: int, watermark=None, batch: int = 40, n: int = 1, **params
) -> list:
    """GeneratedText per prompt (n per prompt, flattened), in batches, each batch with its own seed."""
    from newsgen import generation
    from newsgen.schemas import GenerationParameters

    out = []
    per_call = max(1, batch // n)
    for i in range(0, len(prompts), per_call):
        if hasattr(watermark, "reset"):
            watermark.reset()
        gen = generation.generate(
            loaded,
            prompts[i : i + per_call],
            n=n,
            params=GenerationParameters(seed=seed + i, **params),
            watermark=watermark,
        )
        out.extend(r for rows in gen.results for r in rows)
    return out


# --- human corpus -------------------------------------------------------------------------------------------
def read_sample() -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with SAMPLE_CSV.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("content") or "").strip() and (r.get("title") or "").strip()]
    for r in rows:
        title = r["title"].strip()
        r["headline"] = title[: -len(NYT_SUFFIX)].strip() if title.endswith(NYT_SUFFIX) else title
    return rows


def cut(tokenizer, text: str, length: int) -> str | None:
    """The first `length` tokens of a text (its own tokenisation), or None when it is shorter."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:length]) if len(ids) >= length else None


def windows(tokenizer, text: str, length: int, most: int) -> list[str]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[i : i + length]) for i in range(0, len(ids) - length + 1, length)][:most]


# --- detection ------------------------------------------------------------------------------------------------
def fast_detector(keyring, tokenizer, vocab_size: int):
    """newsgen's Detector, with its per-bigram green-list lookups cached by previous token.

    transformers' WatermarkDetector caches `_get_ngram_score(prefix_tensor, target)` with lru_cache, whose
    keys are fresh tensors (hashed by identity), so every bigram redraws a 50k permutation (~1 ms). Lefthash
    with context width 1 seeds on the previous token only, so a cache keyed by that token returns the very
    same green list; `check_detector` compares against the unpatched Detector on real texts."""
    import numpy as np

    from newsgen.watermark import Detector

    detector = Detector(keyring, vocab_size, tokenizer)
    for inner in detector.detectors.values():
        processor, cache = inner.processor, {}

        def score(prefix, target, processor=processor, cache=cache):
            previous = int(prefix[-1])
            packed = cache.get(previous)
            if packed is None:
                mask = np.zeros(vocab_size, dtype=bool)
                mask[processor._get_greenlist_ids(prefix).numpy()] = True
                packed = cache[previous] = np.packbits(mask)
            return bool((packed[target >> 3] >> (7 - (target & 7))) & 1)

        inner._get_ngram_score_cached = score
    return detector


def check_detector(keyring, tokenizer, vocab_size: int, fast, texts: list[str]) -> dict:
    from newsgen.watermark import Detector

    plain = Detector(keyring, vocab_size, tokenizer)
    same = sum(1 for t in texts if plain.detect_text(t) == fast.detect_text(t))
    return {"texts": len(texts), "identical": same}


def fpr_across_keys(cells: dict[str, list[str]], tokenizer, vocab: int, keys: int) -> dict:
    """Unmarked texts under several fresh keys: one key's FPR on texts that share their bigrams (a templated
    model) moves with that key; pooled over keys it is the scheme's."""
    from newsgen.watermark import keyring_with_new_key

    per_key: dict[str, list] = {name: [] for name in cells}
    for _ in range(keys):
        detector = fast_detector(keyring_with_new_key(), tokenizer, vocab)
        for name, texts in cells.items():
            per_key[name].append([detector.detect_text(t) for t in texts])
    out = {"keys": keys}
    for name, runs in per_key.items():
        pooled = rate_cell([d for run in runs for d in run], positive=False)
        pooled["per_key_fpr"] = [round(sum(1 for d in run if d.watermarked) / len(run), 4) for run in runs]
        pooled["per_key_mean_z"] = [
            round(statistics.fmean([d.score for d in run if d.score is not None] or [0.0]), 3) for run in runs
        ]
        out[name] = pooled
    return out


# --- attacks ----------------------------------------------------------------------------------------------------
def attack(text: str, share: float, rng: random.Random, replacements: list[str] | None) -> str:
    """Delete (replacements None) or replace a share of the words (whitespace-separated), seeded."""
    parts = re.findall(r"\S+|\s+", text)
    words = [i for i, p in enumerate(parts) if not p.isspace()]
    chosen = rng.sample(words, round(share * len(words)))
    for i in chosen:
        if replacements is None:
            parts[i] = ""
            if i + 1 < len(parts) and parts[i + 1].isspace():
                parts[i + 1] = ""
        else:
            parts[i] = rng.choice(replacements)
    return "".join(parts).strip()


# --- perplexity -------------------------------------------------------------------------------------------------
def perplexity(model, tokenizer, prompts: list[str], texts: list[str], length: int) -> dict:
    """Mean NLL over the first `length` tokens of each text, conditioned on its prompt (unwatermarked fp32)."""
    import torch

    total_nll, total_tokens, per_text = 0.0, 0, []
    with torch.inference_mode():
        for p, t in zip(prompts, texts, strict=False):
            prompt_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
            ids = tokenizer(t, add_special_tokens=False)["input_ids"][:length]
            if not ids:
                continue
            full = torch.tensor([prompt_ids + ids])
            logits = model(input_ids=full).logits[0, len(prompt_ids) - 1 : -1].float()
            nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids), reduction="sum").item()
            total_nll, total_tokens = total_nll + nll, total_tokens + len(ids)
            per_text.append(math.exp(nll / len(ids)))
    return {
        "n": len(per_text),
        "tokens": total_tokens,
        "mean_nll": round(total_nll / total_tokens, 4),
        "perplexity": round(math.exp(total_nll / total_tokens), 3),
        "per_text_perplexity_median": round(statistics.median(per_text), 3),
    }


# --- SynthID-Text ----------------------------------------------------------------------------------------------
class SynthID:
    """transformers' SynthIDTextWatermarkLogitsProcessor with its per-call state reset before each generate
    (generate() makes a new processor per call; newsgen's decode loop takes one object)."""

    def __init__(self, keys: list[int], table_seed: int, candidates_only: bool = False):
        import torch
        from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

        self.processor = SynthIDTextWatermarkLogitsProcessor(
            ngram_len=SYNTHID["ngram_len"],
            keys=keys,
            sampling_table_size=SYNTHID["sampling_table_size"],
            sampling_table_seed=table_seed,
            context_history_size=SYNTHID["context_history_size"],
            device=torch.device("cpu"),
        )
        self.candidates_only = candidates_only

    def reset(self):
        self.processor.state = None

    def __call__(self, input_ids, scores):
        import torch

        if not self.candidates_only:
            return self.processor(input_ids, scores)
        # Bench only, for the quality runs' time: the library hashes every vocabulary entry x depth each step
        # (~30 ms a row on this CPU). After top-k / top-p only a few tokens have a probability; a token of
        # probability 0 keeps it (p * (1 + g - mass) = 0), so g-values of the candidates alone give the same
        # distribution (the same library steps below, up to float summation order; checked in synthid_check).
        k = int(torch.isfinite(scores).sum(dim=1).max())
        if k > 1024:
            return self.processor(input_ids, scores)
        p = self.processor
        p._check_input_ids_shape(input_ids)
        values, indices = scores.topk(k, dim=1)
        if p.state is None:
            p._init_state(scores.shape[0])
        else:
            p.state.context = torch.concat((p.state.context, input_ids[:, -1:]), dim=1)[:, 1:]
        p.state.num_calls += 1
        ngram_keys, context_hash = p._compute_keys(p.state.context, indices)
        updated = p.update_scores(values, p.sample_g_values(ngram_keys))
        context_hash = context_hash[:, None]
        repeated = (p.state.context_history == context_hash).any(dim=1, keepdim=True)
        p.state.context_history = torch.concat((context_hash, p.state.context_history), dim=1)[:, :-1]
        out = torch.full_like(scores, torch.finfo(scores.dtype).min).scatter(1, indices, updated)
        return torch.where(repeated, scores, out)

    def score(self, tokenizer, text: str, eos: int) -> tuple[float | None, int]:
        """Unweighted mean g-value over unmasked n-grams and every depth, as a z against 0.5."""
        import torch

        p, n = self.processor, SYNTHID["ngram_len"]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < n + 1:
            return None, 0
        ids = torch.tensor([ids])
        g = p.compute_g_values(ids)  # [1, L - (n - 1), depth]
        mask = p.compute_context_repetition_mask(ids) * p.compute_eos_token_mask(ids, eos)[:, n - 1 :]
        count = int(mask.sum())
        if count == 0:
            return None, 0
        values = count * g.shape[2]
        mean = float((g * mask[..., None]).sum()) / values
        return (mean - 0.5) / math.sqrt(0.25 / values), count


def synthid_check(keys: list[int], table_seed: int, vocab: int) -> dict:
    """The candidates-only SynthID against the library on top-50 scores: the same sampling distribution."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    full, fast = SynthID(keys, table_seed), SynthID(keys, table_seed, candidates_only=True)
    worst, steps = 0.0, 0
    ids = torch.randint(0, vocab, (4, 3), generator=gen)
    for _ in range(12):
        scores = torch.randn(4, vocab, generator=gen)
        top = scores.topk(50, dim=1)
        scores = torch.full_like(scores, float("-inf")).scatter(1, top.indices, top.values)
        a, b = torch.softmax(full(ids, scores), -1), torch.softmax(fast(ids, scores), -1)
        worst, steps = max(worst, float((a - b).abs().max())), steps + 1
        ids = torch.cat([ids, torch.multinomial(a, 1)], dim=1)
    return {"steps": steps, "max_abs_probability_difference": worst}


@contextlib.contextmanager
def watermark_last():
    """SynthID as transformers' generate() applies it: after temperature / top-k / top-p (newsgen may place
    its own watermark elsewhere, see settings.greenlist_placement)."""
    from newsgen import generation

    original = generation._processors

    def last(decoding, watermark=None, constraints=()):
        processors = original(decoding, None, constraints)
        if watermark is not None:
            processors.append(watermark)
        return processors

    generation._processors = last
    try:
        yield
    finally:
        generation._processors = original


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "layers/newsgen/newsgen"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
    except OSError:
        return "unknown"
    changed = [d for d in dirty if d.endswith(".py")]
    return f"{head}" + (f" with uncommitted changes to {', '.join(Path(c).name for c in changed)}" if changed else "")


def greenlist_placement() -> str:
    from newsgen import generation

    sentinel = object()
    processors = list(
        generation._processors(
            {
                "do_sample": True,
                "temperature": 0.8,
                "top_k": 50,
                "top_p": 0.95,
                "repetition_penalty": 1.1,
                "no_repeat_ngram_size": 3,
            },
            sentinel,
        )
    )
    where = processors.index(sentinel)
    return (
        "last (after temperature, top-k, top-p)"
        if where == len(processors) - 1
        else f"before the sampling warpers (position {where + 1} of {len(processors)}: after {', '.join(type(x).__name__ for x in processors[:where])})"
    )


def make_greenlist(vocab: int, key: int, bias: float | None = None):
    """GreenlistWatermark at the library's bias, or another (when the library takes a bias)."""
    import inspect

    from newsgen.watermark import BIAS, GreenlistWatermark

    if bias is None or bias == BIAS:
        return GreenlistWatermark(vocab, key)
    if "bias" not in inspect.signature(GreenlistWatermark).parameters:
        return None
    return GreenlistWatermark(vocab, key, bias=bias)


def synthid_cell(scores: list[tuple[float | None, int]], threshold: float, positive: bool) -> dict:
    n = len(scores)
    zs = [z for z, c in scores if z is not None and c >= 16]
    flagged = sum(1 for z in zs if z >= threshold)
    return {
        "n": n,
        ("detected" if positive else "false_positives"): flagged,
        ("tpr" if positive else "fpr"): round(flagged / n, 4) if n else None,
        "ci95": wilson(flagged, n),
        "too_short": n - len(zs),
        "z": {
            "mean": round(statistics.fmean(zs), 3),
            "median": round(statistics.median(zs), 3),
            "std": round(statistics.pstdev(zs), 3),
            "max": round(max(zs), 3),
        }
        if zs
        else None,
    }


# --- speed on the distilgpt2 shape -----------------------------------------------------------------------------
def distil_model(workdir: Path):
    from bench.run import build_checkpoint
    from newsgen import artifacts
    from newsgen.optimize import optimize_for_cpu
    from newsgen.store import LoadedModel, load_model_dir
    from training.model import tuned_generation_config

    path = build_checkpoint(workdir / "distilgpt2", 6)
    manifest = artifacts.build_manifest(path, task="headline", version="bench", base_model="random-6x768")
    model, tokenizer = load_model_dir(path, manifest)
    model = optimize_for_cpu(model, "int8")
    # the published models' decoding defaults (sampling: T 0.8, top-k 50, top-p 0.95, repetition penalty 1.1,
    # no repeated 3-grams), as served
    model.generation_config = tuned_generation_config("article", tokenizer)
    return LoadedModel("article", "bench", manifest, path, model, tokenizer)


class Counting:
    """Counts a GreenlistWatermark's green-list draws (cache misses) and lookups."""

    def __init__(self, watermark):
        self.watermark, self.misses, self.lookups = watermark, 0, 0
        draw = watermark.draw

        def counted(previous):
            self.misses += 1
            return draw(previous)

        watermark.draw = counted

    def __call__(self, input_ids, scores):
        self.lookups += input_ids.shape[0]
        return self.watermark(input_ids, scores)


def contention_probe(loaded, cores: int) -> dict:
    """Greedy batch 1 on 1 thread and on every core: with a core taken by another process, more threads are slower."""
    import torch

    from bench.run import PROMPT
    from newsgen import generation, prompt
    from newsgen.schemas import GenerationParameters

    rates: dict[int, list[float]] = {1: [], cores: []}
    params = GenerationParameters(max_new_tokens=32, do_sample=False)
    for _ in range(3):  # alternating: a process that comes and goes shows in one of them
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            generation.generate(no_eos(loaded), [prompt.headline_prompt(PROMPT)], params=params)
            t0 = time.perf_counter()
            generation.generate(no_eos(loaded), [prompt.headline_prompt(PROMPT)], params=params)
            rates[threads].append(32 / (time.perf_counter() - t0))
    torch.set_num_threads(1)
    ratios = [a / b for a, b in zip(rates[cores], rates[1], strict=False)]
    return {
        "tokens_per_s_by_threads": {str(k): [round(x, 1) for x in v] for k, v in rates.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "contended": cores > 1 and min(ratios) < 1.2,
    }  # uncontended, 2 threads run b1 ~1.5x one thread here


def speed(
    loaded,
    keyring,
    rounds: int,
    synthid_keys: list[int],
    table_seed: int,
    with_synthid: bool = True,
    deadline_s: float | None = None,
) -> dict:
    """Interleaved rounds; every run generates exactly 64 tokens (NoEOS), so that tokens/s compare. Past
    `deadline_s` (a core taken by another process) no new round starts and the result says so."""
    from bench.run import PROMPT
    from newsgen import generation, prompt
    from newsgen.schemas import GenerationParameters
    from newsgen.watermark import GreenlistWatermark

    vocab = loaded.model.config.vocab_size
    green = Counting(GreenlistWatermark(vocab, keyring.current_key()))  # one per container, reused (warm)
    synth = SynthID(synthid_keys, table_seed)
    runner = no_eos(loaded)
    configs = {  # SynthID at batch 1 only (at batch 8 it hashes 8 x 50k x depth int64 per step: several times slower)
        "b1_greedy": (
            [prompt.headline_prompt(PROMPT)],
            {"do_sample": False},
            ("none", "greenlist", "synthid") if with_synthid else ("none", "greenlist"),
        ),
        "b8_sampled": ([prompt.headline_prompt(PROMPT)] * 8, {}, ("none", "greenlist")),
    }
    out = {}
    began = time.perf_counter()
    for name, (prompts, extra, names) in configs.items():
        if "stopped" in out:
            out["skipped"] = name
            break
        variants = {v: {"none": None, "greenlist": green, "synthid": synth}[v] for v in names}
        tokens = []

        def run(watermark, seed):
            if watermark is synth:
                synth.reset()
            params = GenerationParameters(max_new_tokens=64, **extra, **({} if extra else {"seed": seed}))
            with watermark_last() if watermark is synth else contextlib.nullcontext():
                t0 = time.perf_counter()
                gen = generation.generate(runner, prompts, params=params, watermark=watermark)
                elapsed = time.perf_counter() - t0
            tokens.append(sum(r.generated_tokens for rows in gen.results for r in rows))
            return tokens[-1] / elapsed

        for watermark in variants.values():  # warm-up, and the green-list cache as a warm container has it
            run(watermark, 0)
        green.misses = green.lookups = 0
        rates = {v: [] for v in variants}
        for r in range(rounds):
            if deadline_s is not None and r >= 2 and time.perf_counter() - began > deadline_s:
                out["stopped"] = f"after {r} rounds of {name}: past {deadline_s:.0f} s (another process on the cores)"
                break
            order = list(variants) if r % 2 == 0 else list(reversed(variants))  # A B C, C B A, ...
            for v in order:
                rates[v].append(run(variants[v], 1000 + r))
        done = len(rates["none"])
        ratios = {v: [rates[v][i] / rates["none"][i] for i in range(done)] for v in variants if v != "none"}
        out[name] = {
            "tokens_per_s": {v: summary(rates[v], 1) for v in variants},
            "slowdown": {
                v: {
                    "median": round(1 - statistics.median(x), 4),
                    "min": round(1 - max(x), 4),
                    "max": round(1 - min(x), 4),
                    "per_round_ratio": [round(y, 4) for y in x],
                }
                for v, x in ratios.items()
            },
            "greenlist_cache": {
                "lookups": green.lookups,
                "misses": green.misses,
                "hit_rate": round(1 - green.misses / green.lookups, 4) if green.lookups else None,
            },
            "tokens_per_run": sorted(set(tokens)),
        }
        log(f"speed {name}: " + ", ".join(f"{v} {out[name]['tokens_per_s'][v]['median']:.0f} tok/s" for v in variants))
    return out


# --- profile of GreenlistWatermark.__call__ and a faster identical version -------------------------------------
class FasterGreenlist:
    """Prototype (bench only) of an identical, faster GreenlistWatermark.__call__: the same packed masks, one
    np.unpackbits over the batch's rows and one fused torch.add(scores, mask, alpha=BIAS)."""

    def __init__(self, base):
        self.base = base

    def __call__(self, input_ids, scores):
        import numpy as np
        import torch

        from newsgen.watermark import BIAS

        base = self.base
        for token in input_ids[:, -1].tolist():  # fill / refresh the LRU exactly as green_mask does
            if token in base._masks:
                base._masks.move_to_end(token)
            else:
                base.green_mask(token)
        packed = np.stack([base._masks[t] for t in input_ids[:, -1].tolist()])
        mask = torch.from_numpy(np.unpackbits(packed, axis=1, count=base.vocab_size).view(bool))
        return torch.add(scores, mask, alpha=getattr(base, "bias", BIAS))


def profile(keyring, vocab: int, texts_ids: list[list[int]], step_ms: dict) -> dict:
    import torch

    from newsgen.watermark import BIAS, MASK_CACHE, GreenlistWatermark

    def timed(fn, reps):
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e3

    wm = GreenlistWatermark(vocab, keyring.current_key())
    gen = torch.Generator().manual_seed(SEED)
    out = {}
    # cache misses: a fresh token each time
    fresh = iter(range(vocab))
    out["miss_ms_per_row"] = round(timed(lambda: wm.green_mask(next(fresh)), 200), 4)
    out["library_randperm_ms"] = round(timed(lambda: wm.library._get_greenlist_ids(torch.tensor([7])), 200), 4)
    warm = list(range(64))
    for t in warm:
        wm.green_mask(t)
    faster = FasterGreenlist(wm)
    for b in (1, 8):
        ids = torch.tensor(warm[:b])[:, None]
        scores = torch.randn(b, vocab, generator=gen)
        masks = [wm.green_mask(t) for t in warm[:b]]
        stacked = torch.stack(masks)
        floats = stacked.to(scores.dtype)
        part = {
            "call_ms_all_hits": timed(lambda: wm(ids, scores), 300),
            "lookups_ms (green_mask: dict + np.unpackbits)": timed(lambda: [wm.green_mask(t) for t in warm[:b]], 300),
            "stack_ms": timed(lambda: torch.stack(masks), 300),
            "to_float_ms": timed(lambda: stacked.to(scores.dtype), 300),
            "times_bias_ms": timed(lambda: floats * BIAS, 300),
            "add_ms": timed(lambda: scores + floats, 300),
            "faster_call_ms_all_hits": timed(lambda: faster(ids, scores), 300),
        }
        part = {k: round(v, 4) for k, v in part.items()}
        part["faster_identical"] = bool(
            torch.equal(faster(ids, scores), wm(ids, scores))
            and torch.equal(faster(ids, scores), wm.library(ids, scores))
        )
        part["decode_step_ms_distil_int8"] = step_ms.get(f"b{b}")
        out[f"b{b}"] = part
    # how often a warm container's 4096-entry cache hits on real token streams (previous tokens in order)
    lru, hits, lookups = OrderedDict(), 0, 0
    half = len(texts_ids) // 2
    for i, ids in enumerate(texts_ids):
        for t in ids:
            if i >= half:
                lookups += 1
                hits += t in lru
            if t in lru:
                lru.move_to_end(t)
            else:
                lru[t] = True
                if len(lru) > MASK_CACHE:
                    lru.popitem(last=False)
    out["realistic_hit_rate"] = {
        "cache_size": MASK_CACHE,
        "streams": len(texts_ids),
        "lookups": lookups,
        "hit_rate": round(hits / lookups, 4) if lookups else None,
        "note": "previous tokens of the generated + human texts in order; second half measured",
    }
    h = out["realistic_hit_rate"]["hit_rate"] or 0.0
    for b in (1, 8):
        step = step_ms.get(f"b{b}")
        if step:
            hit_cost = out[f"b{b}"]["call_ms_all_hits"]
            est = (hit_cost + b * (1 - h) * out["miss_ms_per_row"]) / step
            est_fast = (out[f"b{b}"]["faster_call_ms_all_hits"] + b * (1 - h) * out["miss_ms_per_row"]) / step
            out[f"b{b}"]["estimated_slowdown_at_realistic_hit_rate"] = round(est / (1 + est), 4)
            out[f"b{b}"]["estimated_slowdown_faster_call"] = round(est_fast / (1 + est_fast), 4)
    return out


# --- the bench ---------------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="make bench-watermark", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="generated texts per model and setting")
    parser.add_argument("--n-synthid", type=int, default=100)
    parser.add_argument("--n-greedy", type=int, default=20)
    parser.add_argument("--windows", type=int, default=6, help="most human windows per article and length")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--keys", type=int, default=10, help="fresh keys for the unmarked generations' FPR (human: a third)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "watermark.json")
    args = parser.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch

    from infra.local.run import ensure_models
    from newsgen import prompt
    from newsgen.watermark import (
        BIAS,
        GREENLIST_RATIO,
        MIN_TOKENS,
        SCHEME,
        Z_THRESHOLD,
        GreenlistWatermark,
        keyring_with_new_key,
    )

    cores = len(os.sched_getaffinity(0))
    # The quality parts run on one thread: another process on this machine (tests, a server) makes 2-thread
    # OpenMP regions wait for a descheduled thread, measured 3 vs 11-37 ms per row and step. The speed part
    # measures both.
    torch.set_num_threads(1)
    random.seed(SEED)
    results: dict = {"command": "make bench-watermark", "machine": machine()}

    def save():
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")

    if not SAMPLE_CSV.is_file():
        raise SystemExit(f"{SAMPLE_CSV} is absent: the bench needs the All-the-News sample")
    log("models (trained once, then reused from .newsgen/demo)")
    t0 = time.perf_counter()
    demo = ensure_models(WORKDIR, None)
    sample_models = ensure_models(WORKDIR, SAMPLE_CSV)
    training_s = time.perf_counter() - t0
    models = {
        "demo_article": load_tiny(demo["article"], "article"),
        "sample_article": load_tiny(sample_models["article"], "article"),
    }
    headline_loaded, _, headline_report = load_tiny(demo["headline"], "headline")
    tokenizer = headline_loaded.tokenizer
    vocab = headline_loaded.model.config.vocab_size
    eos = tokenizer.eos_token_id

    keyring = keyring_with_new_key()
    green = GreenlistWatermark(vocab, keyring.current_key())
    detector = fast_detector(keyring, tokenizer, vocab)
    synthid_keys = [secrets.randbits(62) for _ in range(SYNTHID["depth"])]
    table_seed = secrets.randbits(31)
    defaults = models["demo_article"][0].model.generation_config
    results["settings"] = {
        "scheme": SCHEME,
        "greenlist_ratio": GREENLIST_RATIO,
        "bias": BIAS,
        "z_threshold": Z_THRESHOLD,
        "min_tokens": MIN_TOKENS,
        "keyring": "fresh random (keyring_with_new_key), one key",
        "n_generated_per_setting": args.n,
        "lengths": list(LENGTHS),
        "generated_tokens": GEN_TOKENS,
        "decoding": {
            k: getattr(defaults, k)
            for k in ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram_size")
        },
        "generation_models": "int8 (optimize_for_cpu), as served",
        "seed": SEED,
        "quality_torch_threads": 1,
        "past_eos": "bench-only NoEOS model wrapper (end token's logit -inf), then each text cut to the length "
        "in its own re-tokenisation; texts shorter than a length are excluded and counted",
        "human_corpus": f"{SAMPLE_CSV.name}: headlines without '{NYT_SUFFIX}', articles cut into up to "
        f"{args.windows} non-overlapping windows per length (the opening window reported apart)",
        "news_text": "headline + '\\n' + article, both from the demo models with their default decoding (EOS kept)",
        "attacks": "share of whitespace-separated words deleted, or replaced by words drawn (frequency-weighted) "
        "from the human articles; seeded",
        "greenlist_placement": greenlist_placement(),
        "synthid_placement": "last (after temperature, top-k, top-p), as transformers' generate() applies it",
        "library_state": git_state(),
    }
    results["models"] = {
        name: {
            "path": str(m[0].path.relative_to(ROOT)),
            "val_perplexity": round(m[2].get("val_perplexity", float("nan")), 3),
            "steps": m[2].get("global_step"),
            "layers_x_width": "2x128 (tiny)",
        }
        for name, m in {**models, "demo_headline": (headline_loaded, None, headline_report)}.items()
    }
    results["models"]["training_or_reuse_s"] = round(training_s, 1)
    save()

    human = read_sample()
    human_words = [w for r in human for w in re.findall(r"[A-Za-z][A-Za-z'’-]*", r["content"])]
    rng = random.Random(SEED)
    prompt_budget = 256 - GEN_TOKENS
    fits = lambda h: len(tokenizer(prompt.article_prompt(h), add_special_tokens=False)["input_ids"]) <= prompt_budget  # noqa: E731
    demo_corpus = WORKDIR / "demo-corpus.csv"
    with demo_corpus.open(newline="", encoding="utf-8") as f:
        demo_titles = [r["title"] for r in csv.DictReader(f) if fits(r["title"])]
    sample_titles = [r["headline"] for r in human if fits(r["headline"])]
    prompts_for = {
        "demo_article": [demo_titles[i % len(demo_titles)] for i in rng.sample(range(len(demo_titles) * 4), args.n)],
        "sample_article": [sample_titles[i % len(sample_titles)] for i in range(args.n)],
    }

    # 1 + 2 (generations): watermarked and unwatermarked texts of 210 tokens ---------------------------------
    generated: dict[str, dict[str, list[str]]] = {}
    tpr: dict = {}
    fpr: dict = {}
    for name, (loaded, _, _) in models.items():
        heads = prompts_for[name]
        article_prompts = prompts_of(loaded, heads)
        runner = no_eos(loaded)
        generated[name] = {}
        for marked in (True, False):
            log(f"{name}: {args.n} {'watermarked' if marked else 'unwatermarked'} texts of {GEN_TOKENS} tokens")
            texts = generate_texts(
                runner,
                article_prompts,
                seed=SEED + (0 if marked else 10_000),
                watermark=green if marked else None,
                max_new_tokens=GEN_TOKENS,
            )
            generated[name]["wm" if marked else "plain"] = [t.text for t in texts]
        results.setdefault("examples", {})[name] = {
            k: [cut(tokenizer, t, 60) for t in v[:2]] for k, v in generated[name].items()
        }
        for marked in (True, False):
            cells = {}
            for length in LENGTHS:
                cuts = [cut(tokenizer, t, length) for t in generated[name]["wm" if marked else "plain"]]
                kept = [c for c in cuts if c is not None]
                cells[str(length)] = rate_cell(
                    [detector.detect_text(c) for c in kept], len(cuts) - len(kept), positive=marked
                )
            (tpr if marked else fpr)[name if marked else f"unwatermarked_{name}"] = cells
        log(f"{name}: TPR " + ", ".join(f"{k}: {v['tpr']}" for k, v in tpr[name].items()))
    # the same texts' TPR at another bias (the library's bias is a setting)
    other_bias = 2.0 if BIAS != 2.0 else 4.0
    sweep_wm = make_greenlist(vocab, keyring.current_key(), other_bias)
    sweep: dict = {}
    if sweep_wm is None:
        sweep["skipped"] = "this GreenlistWatermark takes no bias"
    else:
        for name, (loaded, _, _) in models.items():
            log(f"{name}: {args.n} texts at bias {other_bias}")
            texts = generate_texts(
                no_eos(loaded),
                prompts_of(loaded, prompts_for[name]),
                seed=SEED,
                watermark=sweep_wm,
                max_new_tokens=GEN_TOKENS,
            )
            generated[name][f"wm_bias_{other_bias}"] = [t.text for t in texts]
            cells = {}
            for length in LENGTHS:
                cuts = [cut(tokenizer, t.text, length) for t in texts]
                kept = [c for c in cuts if c is not None]
                cells[str(length)] = rate_cell([detector.detect_text(c) for c in kept], len(cuts) - len(kept))
            sweep[name] = {"tpr": cells}
    results["bias_sweep"] = {"bias": other_bias, **sweep}
    results["detector_check"] = check_detector(
        keyring,
        tokenizer,
        vocab,
        detector,
        [cut(tokenizer, t, 100) or t for t in generated["demo_article"]["wm"][:20]]
        + [r["content"][:600] for r in human[:20]],
    )
    results["tpr"], results["fpr"] = tpr, fpr
    save()

    # headlines and news items (default decoding, EOS kept) ------------------------------------------------------
    article_loaded = models["demo_article"][0]
    for marked in (True, False):
        label = "" if marked else "unwatermarked_"
        log(f"headlines + news items, {'watermarked' if marked else 'unwatermarked'}")
        heads = []
        for i in range(0, args.n, 40):  # 40 headlines per call, from the empty prefix as /v1/news does
            heads += generate_texts(
                headline_loaded,
                prompts_of(headline_loaded, [""]),
                n=min(40, args.n - i),
                seed=SEED + 20_000 + i + (0 if marked else 1),
                watermark=green if marked else None,
            )
        headline_texts = [h.text.strip() for h in heads]
        bodies = generate_texts(
            article_loaded,
            prompts_of(article_loaded, headline_texts),
            seed=SEED + 30_000 + (0 if marked else 1),
            watermark=green if marked else None,
        )
        news = [h + "\n" + b.text.strip() for h, b in zip(headline_texts, bodies, strict=False)]
        if not marked:
            unmarked_news = news
        head_cell = rate_cell([detector.detect_text(h) for h in headline_texts], positive=marked)
        head_cell["tokens_median"] = statistics.median(len(tokenizer(h)["input_ids"]) for h in headline_texts)
        news_cell = rate_cell([detector.detect_text(t) for t in news], positive=marked)
        news_cell["tokens_median"] = statistics.median(len(tokenizer(t)["input_ids"]) for t in news)
        news_cell["article_finish_reasons"] = dict(Counter(b.finish_reason for b in bodies))
        (tpr if marked else fpr)[f"{label}headline"] = head_cell
        (tpr if marked else fpr)[f"{label}news"] = news_cell
    save()

    # 2: human news --------------------------------------------------------------------------------------------------
    log(f"human news: {len(human)} articles and headlines")
    fpr["human_headlines"] = rate_cell([detector.detect_text(r["headline"]) for r in human], positive=False)
    fpr["human_news"] = rate_cell(
        [
            detector.detect_text(r["headline"] + "\n" + (cut(tokenizer, r["content"], 160) or r["content"]))
            for r in human
        ],
        positive=False,
    )
    fpr["human_articles_opening"], fpr["human_articles"] = {}, {}
    human_windows: dict[int, list[str]] = {}
    for length in LENGTHS:
        openings = [cut(tokenizer, r["content"], length) for r in human]
        kept = [c for c in openings if c is not None]
        fpr["human_articles_opening"][str(length)] = rate_cell(
            [detector.detect_text(c) for c in kept], len(openings) - len(kept), positive=False
        )
        human_windows[length] = [w for r in human for w in windows(tokenizer, r["content"], length, args.windows)]
        fpr["human_articles"][str(length)] = rate_cell(
            [detector.detect_text(w) for w in human_windows[length]], positive=False
        )
    log("human FPR " + ", ".join(f"{k}: {v['fpr']} (n {v['n']})" for k, v in fpr["human_articles"].items()))
    log(f"FPR under {args.keys} more keys (unmarked generations) and {max(1, args.keys // 3)} (human windows)")
    unmarked = {
        f"unwatermarked_{name}_{length}": [
            c for c in (cut(tokenizer, t, length) for t in generated[name]["plain"]) if c
        ]
        for name in models
        for length in LENGTHS
    }
    unmarked["unwatermarked_news"] = unmarked_news
    fpr["across_keys"] = fpr_across_keys(unmarked, tokenizer, vocab, args.keys)
    fpr["across_keys_human"] = fpr_across_keys(
        {f"human_articles_{n}": human_windows[n] for n in LENGTHS}, tokenizer, vocab, max(1, args.keys // 3)
    )
    save()

    # 3: robustness ----------------------------------------------------------------------------------------------------
    log("robustness: deletions and replacements")
    robustness: dict = {}
    for name in models:
        robustness[name] = {}
        for kind in ("delete", "replace"):
            for share in (0.10, 0.25):
                cells = {}
                for length in (100, 200):
                    attack_rng = random.Random(f"{SEED}-{name}-{kind}-{share}-{length}")
                    kept = [c for c in (cut(tokenizer, t, length) for t in generated[name]["wm"]) if c is not None]
                    attacked = [attack(c, share, attack_rng, human_words if kind == "replace" else None) for c in kept]
                    cells[str(length)] = rate_cell([detector.detect_text(a) for a in attacked])
                robustness[name][f"{kind}_{int(share * 100)}pct"] = cells
    results["robustness"] = robustness
    save()

    # 4a: perplexity cost -------------------------------------------------------------------------------------------------
    log("perplexity of watermarked vs unwatermarked generations (fp32, unwatermarked model)")
    cost: dict = {"perplexity": {}}
    for name, (loaded, fp32, _) in models.items():
        ps = prompts_of(loaded, prompts_for[name])
        w = perplexity(fp32, tokenizer, ps, generated[name]["wm"], 200)
        p = perplexity(fp32, tokenizer, ps, generated[name]["plain"], 200)
        cost["perplexity"][name] = {
            "bias": BIAS,
            "watermarked": w,
            "unwatermarked": p,
            "relative_increase": round(w["perplexity"] / p["perplexity"] - 1, 4),
        }
        other = generated[name].get(f"wm_bias_{other_bias}")
        if other:
            o = perplexity(fp32, tokenizer, ps, other, 200)
            results["bias_sweep"][name]["perplexity"] = o
            results["bias_sweep"][name]["relative_increase"] = round(o["perplexity"] / p["perplexity"] - 1, 4)
        if name == "sample_article":  # what the real articles score under it (it is a weak model)
            cost["perplexity"][name]["human_articles_first_200_tokens"] = perplexity(
                fp32,
                tokenizer,
                prompts_of(loaded, [r["headline"] for r in human]),
                [" " * (loaded.manifest.prompt_format >= 2) + r["content"] for r in human],  # as trained
                200,
            )
    results["cost"] = cost
    save()

    # 5: SynthID-Text on the demo article model -------------------------------------------------------------------------------
    log(f"SynthID-Text: {args.n_synthid} texts on the demo article model (depth {SYNTHID['depth']})")
    synth = SynthID(synthid_keys, table_seed)  # the library processor: greedy, scoring
    synth_fast = SynthID(synthid_keys, table_seed, candidates_only=True)  # the same keys and table: sampling
    loaded = models["demo_article"][0]
    sprompts = prompts_of(loaded, prompts_for["demo_article"][: args.n_synthid])
    with watermark_last():
        stexts = [
            t.text
            for t in generate_texts(
                no_eos(loaded), sprompts, seed=SEED + 40_000, watermark=synth_fast, max_new_tokens=110
            )
        ]
    synthid: dict = {
        "settings": {
            **SYNTHID,
            "keys": f"{SYNTHID['depth']} fresh random keys",
            "sampling_table_seed": "fresh random",
            "score": "unweighted mean g-value over unmasked n-grams (context-repetition and EOS masks) and "
            "every depth; one-sided z against 0.5; threshold z >= 4 and >= 16 n-grams, as the green list",
            "sampling_table_mean": round(float(synth.processor.sampling_table.float().mean()), 4),
            "generation": "sampled texts with the g-values of the finite-probability candidates only "
            "(bench-only, the same distribution: synthid_check); greedy and speed with the library processor",
        },
        "synthid_check": synthid_check(synthid_keys, table_seed, vocab),
        "tpr": {},
        "fpr_human_articles": {},
        "fpr_human_articles_opening": {},
    }
    for length in (50, 100):
        kept = [c for c in (cut(tokenizer, t, length) for t in stexts) if c is not None]
        synthid["tpr"][str(length)] = synthid_cell([synth.score(tokenizer, c, eos) for c in kept], Z_THRESHOLD, True)
        synthid["tpr"][str(length)]["excluded_shorter_than_length"] = len(stexts) - len(kept)
        synthid["fpr_human_articles"][str(length)] = synthid_cell(
            [synth.score(tokenizer, w, eos) for w in human_windows[length]], Z_THRESHOLD, False
        )
        openings = [c for c in (cut(tokenizer, r["content"], length) for r in human) if c is not None]
        synthid["fpr_human_articles_opening"][str(length)] = synthid_cell(
            [synth.score(tokenizer, c, eos) for c in openings], Z_THRESHOLD, False
        )
    plain_100 = [c for c in (cut(tokenizer, t, 100) for t in generated["demo_article"]["plain"][: args.n_synthid]) if c]
    synthid["fpr_unwatermarked_demo_article_100"] = synthid_cell(
        [synth.score(tokenizer, c, eos) for c in plain_100], Z_THRESHOLD, False
    )
    synthid["perplexity"] = perplexity(models["demo_article"][1], tokenizer, sprompts, stexts, 100)
    synthid["perplexity_greenlist_same_prompts_100"] = perplexity(
        models["demo_article"][1], tokenizer, sprompts, generated["demo_article"]["wm"][: args.n_synthid], 100
    )
    synthid["perplexity_unwatermarked_same_prompts_100"] = perplexity(
        models["demo_article"][1], tokenizer, sprompts, generated["demo_article"]["plain"][: args.n_synthid], 100
    )
    log("SynthID TPR " + ", ".join(f"{k}: {v['tpr']}" for k, v in synthid["tpr"].items()))

    # greedy decoding: both schemes, 100 tokens
    log(f"greedy decoding: {args.n_greedy} texts each")
    gprompts = sprompts[: args.n_greedy]
    greedy = {}
    for label, wm in (("greenlist", green), ("synthid", synth)):
        with watermark_last() if wm is synth else contextlib.nullcontext():
            texts = [
                t.text
                for t in generate_texts(
                    no_eos(loaded),
                    gprompts,
                    seed=SEED,
                    watermark=wm,
                    batch=1 if wm is synth else 40,
                    max_new_tokens=110,
                    do_sample=False,
                )
            ]
        kept = [c for c in (cut(tokenizer, t, 100) for t in texts) if c is not None]
        if label == "greenlist":
            greedy[label] = rate_cell([detector.detect_text(c) for c in kept], len(texts) - len(kept))
        else:
            greedy[label] = synthid_cell([synth.score(tokenizer, c, eos) for c in kept], Z_THRESHOLD, True)
        greedy[label]["distinct_texts"] = len(set(kept))
    synthid["greedy_100_tokens"] = greedy
    results["synthid"] = synthid
    save()

    # 4b + 5: speed on the distilgpt2 shape, and where the green list's time goes ---------------------------------------
    with tempfile.TemporaryDirectory(prefix="newsgen-wm-bench-") as tmp:
        distil = distil_model(Path(tmp))
        probe = contention_probe(distil, cores)
        cost["contention_probe"] = probe
        for threads in [1] + ([cores] if cores > 1 and not probe["contended"] else []):
            torch.set_num_threads(threads)
            log(f"speed: distilgpt2 shape, int8, random weights, {threads} thread(s)")
            key = "speed_distilgpt2_int8" + ("" if threads == 1 else f"_{threads}_threads")
            if threads == 1:
                cost[key] = speed(distil, keyring, args.rounds, synthid_keys, table_seed)
            else:  # the green list only, bounded: another process may take a core at any time
                cost[key] = speed(
                    distil, keyring, min(args.rounds, 5), synthid_keys, table_seed, with_synthid=False, deadline_s=45
                )
                cost[key]["contention_probe_after"] = contention_probe(distil, cores)
            cost[key]["torch_threads"] = threads
        torch.set_num_threads(1)
        cost["speed_distilgpt2_int8"]["settings"] = {
            "new_tokens": 64,
            "rounds": args.rounds,
            "order": "none, greenlist, synthid; reversed every other round",
            "ratio": "per round, watermarked / none tokens/s",
            "b1_greedy": "greedy, the served defaults' repetition penalty 1.1 and no repeated 3-grams",
            "b8_sampled": "8 rows, the served default sampling (T 0.8, top-k 50, top-p 0.95, penalty 1.1, no repeated 3-grams)",
            "weights": "random (speed does not depend on weights, but the green-list cache's hit rate does: random weights "
            "pick near-uniform tokens when sampling, see greenlist_cache)",
            "threads": f"1; with {cores} threads too (speed_distilgpt2_int8_{cores}_threads, as served on this machine; green "
            "list only, at most 5 rounds, no new round after 45 s) unless another process holds a core "
            "(contention_probe): 2-thread OpenMP regions then wait for a descheduled thread and the figures "
            "measure that",
        }
        step_ms = {
            "b1": 1000 / cost["speed_distilgpt2_int8"]["b1_greedy"]["tokens_per_s"]["none"]["median"],
            "b8": 8000 / cost["speed_distilgpt2_int8"]["b8_sampled"]["tokens_per_s"]["none"]["median"],
        }
    log("profile of GreenlistWatermark.__call__")
    streams = [
        tokenizer(t, add_special_tokens=False)["input_ids"]
        for t in generated["demo_article"]["wm"] + generated["sample_article"]["wm"]
    ]
    streams += [tokenizer(r["content"], add_special_tokens=False)["input_ids"][:400] for r in human]
    random.Random(SEED).shuffle(streams)
    cost["profile_greenlist_call"] = profile(keyring, vocab, streams, {k: round(v, 3) for k, v in step_ms.items()})
    results["targets"] = targets(results)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    results["runtime_s_without_training"] = round(results["runtime_s"] - training_s, 1)
    save()
    print(table(results))
    print(f"\nwrote {args.output} in {results['runtime_s']:.0f}s")


def targets(results: dict) -> dict:
    fpr = results["fpr"]
    human_fp = (
        sum(c["false_positives"] for c in fpr["human_articles"].values()) + fpr["human_headlines"]["false_positives"]
    )
    human_n = sum(c["n"] for c in fpr["human_articles"].values()) + fpr["human_headlines"]["n"]
    speed = results["cost"]["speed_distilgpt2_int8"]
    out = {
        "fpr_human_all_cells": {
            "value": round(human_fp / human_n, 4),
            "n": human_n,
            "target": 0.01,
            "lower_is_better": True,
        },
        "slowdown_b1_greedy": {
            "value": speed["b1_greedy"]["slowdown"]["greenlist"]["median"],
            "target": 0.05,
            "lower_is_better": True,
        },
        "slowdown_b8_sampled": {
            "value": speed["b8_sampled"]["slowdown"]["greenlist"]["median"],
            "target": 0.05,
            "lower_is_better": True,
        },
    }
    for item in out.values():
        item["met"] = item["value"] <= item["target"]
    return out


def table(results: dict) -> str:
    def pct(cell, key):
        return "–" if cell.get(key) is None else f"{100 * cell[key]:.1f} % (n {cell['n']})"

    tpr, fpr = results["tpr"], results["fpr"]
    lines = ["| text | " + " | ".join(f"{n} tokens" for n in LENGTHS) + " |", "|---|" + "---|" * len(LENGTHS)]
    bias, sweep = results["settings"]["bias"], results.get("bias_sweep", {})
    for name, label in (
        ("demo_article", "TPR, demo article model"),
        ("sample_article", "TPR, All-the-News article model"),
    ):
        lines.append(f"| {label}, bias {bias} | " + " | ".join(pct(tpr[name][str(n)], "tpr") for n in LENGTHS) + " |")
        if name in sweep:
            lines.append(
                f"| {label}, bias {sweep['bias']} | "
                + " | ".join(pct(sweep[name]["tpr"][str(n)], "tpr") for n in LENGTHS)
                + " |"
            )
    for name, label in (
        ("unwatermarked_demo_article", "FPR, unwatermarked demo article"),
        ("unwatermarked_sample_article", "FPR, unwatermarked All-the-News article"),
        ("human_articles", "FPR, human articles (windows)"),
        ("human_articles_opening", "FPR, human articles (openings)"),
    ):
        lines.append(f"| {label} | " + " | ".join(pct(fpr[name][str(n)], "fpr") for n in LENGTHS) + " |")
    ak, akh = fpr.get("across_keys", {}), fpr.get("across_keys_human", {})
    for name, label in (("demo_article", "demo article"), ("sample_article", "All-the-News article")):
        if f"unwatermarked_{name}_25" in ak:
            lines.append(
                f"| FPR, unwatermarked {label}, pooled over {ak['keys']} other keys | "
                + " | ".join(pct(ak[f"unwatermarked_{name}_{n}"], "fpr") for n in LENGTHS)
                + " |"
            )
    if "human_articles_25" in akh:
        lines.append(
            f"| FPR, human articles (windows), pooled over {akh['keys']} other keys | "
            + " | ".join(pct(akh[f"human_articles_{n}"], "fpr") for n in LENGTHS)
            + " |"
        )
    for name in ("demo_article", "sample_article"):
        for attack_name, cells in results["robustness"][name].items():
            lines.append(
                f"| TPR {name} after {attack_name.replace('_', ' ').replace('pct', ' %')} | – | – | "
                + " | ".join(pct(cells[str(n)], "tpr") for n in (100, 200))
                + " |"
            )
    s = results["synthid"]
    lines.append(
        "| SynthID TPR, demo article model | – | "
        + " | ".join(pct(s["tpr"][str(n)], "tpr") for n in (50, 100))
        + " | – |"
    )
    lines.append(
        "| SynthID FPR, human articles (windows) | – | "
        + " | ".join(pct(s["fpr_human_articles"][str(n)], "fpr") for n in (50, 100))
        + " | – |"
    )
    lines += ["", "| whole texts | rate | too short | median tokens |", "|---|---|---|---|"]
    for key, label, rate in (
        ("headline", "TPR, generated headlines", "tpr"),
        ("news", "TPR, /v1/news items (headline + article)", "tpr"),
    ):
        c = tpr[key]
        lines.append(f"| {label} | {pct(c, rate)} | {c['too_short']} | {c.get('tokens_median', '–')} |")
    for key, label in (
        ("unwatermarked_headline", "FPR, unwatermarked headlines"),
        ("unwatermarked_news", "FPR, unwatermarked news items"),
        ("human_headlines", "FPR, human headlines"),
        ("human_news", "FPR, human headline + 160 article tokens"),
    ):
        c = fpr[key]
        lines.append(f"| {label} | {pct(c, 'fpr')} | {c['too_short']} | {c.get('tokens_median', '–')} |")
    if "unwatermarked_news" in ak:
        c = ak["unwatermarked_news"]
        lines.append(
            f"| FPR, unwatermarked news items, pooled over {ak['keys']} other keys | {pct(c, 'fpr')} | {c['too_short']} | – |"
        )
    cost = results["cost"]
    lines += ["", "| cost | none | green list | SynthID |", "|---|---|---|---|"]
    for name in ("demo_article", "sample_article"):
        p = cost["perplexity"][name]
        lines.append(
            f"| perplexity of 200-token generations, {name} (n {p['watermarked']['n']}), bias {bias} | "
            f"{p['unwatermarked']['perplexity']} | {p['watermarked']['perplexity']} (+{100 * p['relative_increase']:.1f} %) | – |"
        )
        if name in sweep and "perplexity" in sweep[name]:
            lines.append(
                f"| … bias {sweep['bias']} | {p['unwatermarked']['perplexity']} | {sweep[name]['perplexity']['perplexity']} "
                f"(+{100 * sweep[name]['relative_increase']:.1f} %) | – |"
            )
    lines.append(
        f"| perplexity of 100-token generations, demo_article (n {s['perplexity']['n']}) | "
        f"{s['perplexity_unwatermarked_same_prompts_100']['perplexity']} | "
        f"{s['perplexity_greenlist_same_prompts_100']['perplexity']} | {s['perplexity']['perplexity']} |"
    )

    def rate(t, sl, v):
        if v not in t:
            return "–"
        return f"{t[v]['median']:.0f} ({100 * sl[v]['median']:+.1f} %, {100 * sl[v]['min']:+.1f}…{100 * sl[v]['max']:+.1f})"

    for key in (k for k in cost if k.startswith("speed_")):
        if "stopped" in cost[key]:
            lines.append(
                f"| tok/s distilgpt2 int8, {cost[key]['torch_threads']} threads: stopped {cost[key]['stopped']} | – | – | – |"
            )
        for config, sp in ((k, v) for k, v in cost[key].items() if isinstance(v, dict) and "tokens_per_s" in v):
            t, sl = sp["tokens_per_s"], sp["slowdown"]
            lines.append(
                f"| tok/s distilgpt2 int8 {config}, {cost[key]['torch_threads']} thread(s) (slowdown median, min…max of "
                f"{len(t['none']['runs'])} rounds) | {t['none']['median']:.0f} | {rate(t, sl, 'greenlist')} | {rate(t, sl, 'synthid')} |"
            )
    m = results["machine"]
    st = results["settings"]
    lines += [
        "",
        f"{m['cpu_model']}, {m['cpu_capability']}, {m['cores']} cores. Green list: bias {st['bias']}, {st['greenlist_placement']}; "
        f"detected at z ≥ {st['z_threshold']} (SynthID: the same z on its mean g-value). Rates with n; 95 % Wilson "
        f"intervals, z distributions and every setting in bench/watermark.json.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
