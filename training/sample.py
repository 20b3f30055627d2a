"""`python -m training sample`: generate from a local checkpoint with the code the Lambdas run.

The directory is described by a manifest and loaded by the store's `load_model_dir` (safetensors only), and
texts come from `newsgen.generation.generate` with `newsgen.prompt`'s prompts: what you read here is what the
API would answer for the same model, prompt, parameters and seed. Nothing touches S3.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from pydantic import ValidationError

from newsgen import artifacts, generation
from newsgen.errors import NewsgenError, UnsupportedArtifact, problem_text, validation_problems
from newsgen.prompt import Task, article_prompt, headline_prompt
from newsgen.schemas import MAX_RESULTS, GeneratedText, GenerationParameters
from newsgen.store import LoadedModel, load_model_dir

LOCAL_VERSION = "local"
NOTICE = "synthetic: machine-generated text, not news"
COMPARE_SEED = 1234  # --compare-decoding without --seed: every sampling row uses this one seed

# (label, parameters over the model's generation_config.json); the sampling rows switch off the other filters
# so that each shows one strategy. repetition_penalty / no_repeat_ngram_size stay the model's, as served.
DECODINGS = (
    ("greedy", {"do_sample": False, "num_beams": 1}),
    ("beam search (4 beams)", {"do_sample": False, "num_beams": 4}),
    ("top-k 50", {"do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 1.0}),
    ("top-p 0.9", {"do_sample": True, "top_k": 0, "top_p": 0.9, "temperature": 1.0}),
    ("temperature 0.7", {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 0.7}),
    ("temperature 1.3", {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.3}),
)


def load_local(model_dir: Path) -> LoadedModel:
    """A LoadedModel from a `train` / `distill` output directory, as the store would build it from S3."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # the weights' loading bar is noise on a command that prints text
    model_dir = Path(model_dir)
    report_path = model_dir / "training_report.json"
    if not model_dir.is_dir():
        raise FileNotFoundError(f"--model {model_dir}: no such directory")
    if not report_path.is_file():
        raise UnsupportedArtifact(f"--model {model_dir} has no training_report.json: not a `train` output directory")
    report = json.loads(report_path.read_text())
    if report.get("task") not in tuple(Task):
        raise UnsupportedArtifact(f"--model {model_dir}: training_report.json names no task (headline or article)")
    manifest = artifacts.build_manifest(
        model_dir,
        task=report.get("task"),
        version=LOCAL_VERSION,
        base_model=report.get("base_model", "unknown"),
        data_fingerprint=report.get("data_fingerprint"),
        export="fp32" if (model_dir / "model.safetensors").is_file() else "int8",  # int8: the shipped demo models
    )
    try:
        model, tokenizer = load_model_dir(model_dir, manifest)
    except NewsgenError:
        raise
    except Exception as exc:  # transformers raises many types for a malformed checkpoint
        raise UnsupportedArtifact(f"--model {model_dir} is not a loadable checkpoint: {exc}") from exc
    return LoadedModel(
        task=manifest.task, version=LOCAL_VERSION, manifest=manifest, path=model_dir, model=model, tokenizer=tokenizer
    )


def prompt_for(loaded: LoadedModel, text: str, headline: str | None) -> tuple[str, str, str]:
    """(generation prompt, prefix the result starts with, what is asked for), built as the API builds them."""
    if loaded.task == "headline":
        if headline is not None:
            raise ValueError(f"{loaded.path} is a headline model; --headline needs an article model")
        return (
            headline_prompt(text, loaded.manifest.prompt_format),
            text,
            f"headlines starting {text!r}" if text else "headlines",
        )
    headline = (headline or text).strip()
    if not headline:
        raise ValueError(f"{loaded.path} is an article model: give it --headline")
    return article_prompt(headline, loaded.manifest.prompt_format), "", f"article openings for {headline!r}"


def parameters(**values) -> GenerationParameters:
    try:
        return GenerationParameters(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:  # one line for the command line, not pydantic's block
        raise ValueError("; ".join(problem_text(p, option=True) for p in validation_problems(exc.errors()))) from None


def finished(prefix: str, result: GeneratedText) -> str:
    return (prefix + result.text).strip()


def sample(
    model_dir: Path,
    *,
    prompt: str = "",
    headline: str | None = None,
    n: int = 3,
    seed: int | None = None,
    max_new_tokens: int | None = None,
) -> str:
    if not 1 <= n <= MAX_RESULTS:
        raise ValueError(f"--n must be 1 to {MAX_RESULTS}, not {n}")
    params = parameters(seed=seed, max_new_tokens=max_new_tokens)
    loaded = load_local(model_dir)
    text, prefix, asked = prompt_for(loaded, prompt, headline)
    out = generation.generate(loaded, [text], n=n, params=params)
    lines = [f"{header(loaded, asked)}, seed {out.seed}"]
    for i, result in enumerate(out.results[0], 1):
        lines.append(textwrap.fill(f"{i}. {finished(prefix, result)}", width=100, subsequent_indent="   "))
        lines.append(f"   [{result.finish_reason}, {result.generated_tokens} tokens]")
    return "\n".join(lines)


def compare_decoding(
    model_dir: Path,
    *,
    prompt: str = "",
    headline: str | None = None,
    seed: int | None = None,
    max_new_tokens: int | None = None,
) -> str:
    """The same prompt under each decoding strategy, one text each, as a plain table."""
    seed = COMPARE_SEED if seed is None else seed
    settings = [
        (label, parameters(**decoding, seed=seed if decoding["do_sample"] else None, max_new_tokens=max_new_tokens))
        for label, decoding in DECODINGS
    ]
    loaded = load_local(model_dir)
    text, prefix, asked = prompt_for(loaded, prompt, headline)
    rows = []
    for label, params in settings:
        result = generation.generate(loaded, [text], n=1, params=params).results[0][0]
        rows.append((label, f"{result.generated_tokens} {result.finish_reason}", finished(prefix, result)))

    defaults = loaded.model.generation_config
    label_width, tokens_width = (max(len(row[i]) for row in [*rows, ("decoding", "tokens, finish")]) for i in (0, 1))
    lines = [
        f"{header(loaded, asked)}, seed {seed} for every sampled row",
        f"from generation_config.json: repetition_penalty {defaults.repetition_penalty}, "
        f"no_repeat_ngram_size {defaults.no_repeat_ngram_size}, max_new_tokens {max_new_tokens or defaults.max_new_tokens}",
        "",
        f"{'decoding':<{label_width}} | {'tokens, finish':<{tokens_width}} | text",
        f"{'-' * label_width}-+-{'-' * tokens_width}-+-{'-' * 60}",
    ]
    for label, tokens, body in rows:
        wrapped = textwrap.wrap(body, width=80) or [""]
        lines.append(f"{label:<{label_width}} | {tokens:<{tokens_width}} | {wrapped[0]}")
        lines.extend(f"{'':<{label_width}} | {'':<{tokens_width}} | {more}" for more in wrapped[1:])
    return "\n".join(lines)


def header(loaded: LoadedModel, asked: str) -> str:
    return f"{asked} from {loaded.path} ({loaded.task} model, {loaded.manifest.base_model}; {NOTICE})"
