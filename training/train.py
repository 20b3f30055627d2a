"""Fine-tuning with the Hugging Face Trainer: one task (headline or article) per run.

The same command runs on a laptop CPU (tiny model, fp32) and on a GPU instance (bf16, or fp16 where bf16 is
missing); `accelerate launch -m training train ...` or `torchrun --nproc-per-node N -m training train ...`
runs it data-parallel without code changes.

`distill` shares the run's plumbing: options checks, datasets, TrainingArguments, and `fit` (train, evaluate,
save, report, plot).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training import compact_vocab
from training.dataset import build_dataset, fingerprint
from training.model import BaseUnavailable, build_model, check_base_available, tuned_generation_config
from training.tokenizer import TINY, base_tokenizer

CHECKPOINTS = "checkpoints"
MAX_LENGTH = {"headline": 64, "article": 256}
# Training tokens per model parameter under which a run learns the corpus' surface, not the language (`train`
# warns, `make run` repeats it). From scratch: about 20, the compute-optimal ratio of Hoffmann et al. 2022
# ("Chinchilla"); a tiny GPT-2 (6.9M parameters, mostly the 50k-token embeddings) would want ~140M tokens.
# Fine-tuning a pretrained GPT-2 needs far less, since it knows the language and the corpus only teaches style
# and format: 1 per 100 parameters, a rule of thumb (~0.8M tokens, ~6,000 article openings, for distilgpt2).
MIN_TOKENS_PER_PARAMETER = {"from scratch": 20.0, "fine-tuned": 0.01}


class TrainError(Exception):
    """A problem with the run's options or inputs, worded for the command line."""


@dataclass
class TrainOptions:
    task: str
    data: Path
    output: Path
    base: str = TINY
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = None  # default: 1e-3 from scratch, 5e-5 fine-tuning a pretrained GPT-2
    warmup_steps: int = 10
    weight_decay: float = 0.01
    logging_steps: int = 10
    eval_steps: int = 50
    save_steps: int = 100
    save_total_limit: int = 2
    max_length: int | None = None
    seed: int = 42
    resume: bool = False
    progress: bool = True
    compact_vocab: bool = False  # from scratch only: train over the corpus' tokens (training/compact_vocab.py)


def precision() -> dict:
    """bf16 on GPUs that have it, fp16 on older ones, fp32 on CPU."""
    import torch

    if torch.cuda.is_available():
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    return {}


def cpu_distributed() -> dict:
    """A torchrun launch on a machine without CUDA runs its ranks over gloo on the CPU.

    Without use_cpu, accelerate looks for a GPU backend, finds none and starts no process group: each rank then
    trains alone as rank 0 of 1, and all of them write the same output directory.
    """
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        return {"use_cpu": True, "ddp_backend": "gloo"}
    return {}


def checkpoints_in(directory: Path) -> list[Path]:
    return sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))


def default_learning_rate(base: str) -> float:
    return 1e-3 if base == TINY else 5e-5


def train(options: TrainOptions) -> dict:
    check_options(options)
    check_base(options.base)  # before transformers' imports: an unreachable hub is said in seconds
    from transformers import Trainer

    tokenizer = load_base(options.base, base_tokenizer)
    train_set, eval_set = load_datasets(options, tokenizer)
    model = load_base(options.base, build_model, tokenizer, seed=options.seed)
    collator = data_collator(tokenizer)
    if options.compact_vocab:
        full_config, used_ids = model.config, compact_vocab.used_token_ids(tokenizer, train_set, eval_set)
        model = compact_vocab.compact_model(full_config, used_ids, options.seed)
        collator = compact_vocab.CompactCollator(collator, used_ids, len(tokenizer))
    model.generation_config = tuned_generation_config(options.task, tokenizer)
    size_warning = corpus_size_warning(options, train_set, model.num_parameters())
    if size_warning and int(os.environ.get("RANK", "0")) == 0:
        print(f"warning: {size_warning}", file=sys.stderr, flush=True)
    trainer = Trainer(
        model=model,
        args=training_arguments(options, options.learning_rate or default_learning_rate(options.base)),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=tokenizer,
    )
    report = fit(trainer, options, base_model=options.base, extra={"data_warning": size_warning})
    if options.compact_vocab and trainer.is_world_process_zero():
        compact_vocab.expand_saved(Path(options.output), full_config, used_ids)
    return report


def corpus_size_warning(options: TrainOptions, train_set: list[dict], parameters: int) -> str | None:
    """A sentence when the training set is too small for the model (MIN_TOKENS_PER_PARAMETER), else None."""
    tokens = sum(len(example["input_ids"]) for example in train_set)
    regime = "from scratch" if options.base == TINY else "fine-tuned"
    needed = MIN_TOKENS_PER_PARAMETER[regime]
    if tokens >= needed * parameters:
        return None
    instead = "more data, or a pretrained --base (distilgpt2, gpt2)" if regime == "from scratch" else "more data"
    return (
        f"the {options.task} training set has {tokens:,} tokens for a {parameters / 1e6:.1f}M-parameter model "
        f"{regime} ({tokens / parameters:.2g} tokens per parameter; about {needed:g} are needed): expect text "
        f"that imitates the corpus' surface, not fluent news, and a high validation perplexity. Use {instead}."
    )


def check_base(base: str) -> None:
    """One line, in seconds, when --base is a hub model that cannot be had here (offline, hub unreachable)."""
    try:
        check_base_available(base)
    except BaseUnavailable as exc:
        raise TrainError(str(exc)) from None


def load_base(base: str, load, *args, **kwargs):
    """`load(base, ...)` (the tokenizer or the model of --base), failing with the first line of the loader's
    own error (e.g. a hub name that does not exist) instead of a traceback."""
    try:
        return load(base, *args, **kwargs)
    except OSError as exc:  # transformers' "is not a local folder and is not a valid model identifier", ...
        raise TrainError(f"--base {base}: {str(exc).strip().splitlines()[0]}") from None


def check_options(options: TrainOptions) -> None:
    """Refuse a run that would fail late, or overwrite another run's checkpoints."""
    if options.compact_vocab and options.base != TINY:
        raise TrainError("--compact-vocab trains a model from scratch: it needs --base tiny")
    if options.task not in MAX_LENGTH:
        raise TrainError(f"--task must be headline or article, not {options.task!r}")
    if options.save_steps % options.eval_steps:
        raise TrainError(
            f"--save-steps ({options.save_steps}) must be a multiple of --eval-steps ({options.eval_steps}) "
            "so that the best checkpoint can be kept"
        )
    checkpoint_dir = Path(options.output) / CHECKPOINTS
    existing = checkpoints_in(checkpoint_dir)
    if options.resume and not existing:
        raise TrainError(f"--resume: no checkpoint in {checkpoint_dir} to resume from")
    if existing and not options.resume:
        raise TrainError(f"{checkpoint_dir} already has checkpoints; pass --resume to continue, or another --output")


def load_datasets(options: TrainOptions, tokenizer) -> tuple[list[dict], list[dict]]:
    max_length = options.max_length or MAX_LENGTH[options.task]
    train_set = build_dataset(options.data, "train", options.task, tokenizer, max_length)
    eval_set = build_dataset(options.data, "validation", options.task, tokenizer, max_length)
    if not train_set or not eval_set:
        raise TrainError(
            f"{options.data}: {len(train_set)} training and {len(eval_set)} validation examples for the "
            f"{options.task} task; both must be non-empty (check prepare's report.json)"
        )
    return train_set, eval_set


def training_arguments(options: TrainOptions, learning_rate: float):
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(Path(options.output) / CHECKPOINTS),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=learning_rate,
        warmup_steps=options.warmup_steps,
        weight_decay=options.weight_decay,
        lr_scheduler_type="cosine",
        logging_strategy="steps",
        logging_steps=options.logging_steps,
        logging_first_step=True,
        eval_strategy="steps",
        eval_steps=options.eval_steps,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=options.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to="none",
        seed=options.seed,
        disable_tqdm=not options.progress,
        dataloader_pin_memory=torch.cuda.is_available(),
        **precision(),
        **cpu_distributed(),
    )


def data_collator(tokenizer):
    from transformers import DataCollatorForSeq2Seq

    # Pads input_ids with <|pad|> and labels with -100 (right padding is right for training).
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8)


@contextlib.contextmanager
def progress_bars(shown: bool):
    """transformers' own bars (save_pretrained's shard writer) off too when the Trainer's are: disable_tqdm
    covers only the Trainer's."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if not shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled and not shown:
            hf_logging.enable_progress_bar()


def expect_tied_weights_missing(model) -> None:
    """A tied output head (GPT-2's lm_head is its embedding matrix) is saved once, as the embeddings, so every
    checkpoint lacks it by design. Loading the best checkpoint at the end (or resuming), the Trainer re-ties it
    without a word when the missing keys are the model's `_keys_to_ignore_on_save`, and otherwise warns "There
    were missing keys in the checkpoint model loaded: ['lm_head.weight']" — which transformers 5 always does,
    since it leaves that set empty. Name the tied keys there: save_pretrained skips them anyway."""
    tied = set(getattr(model, "all_tied_weights_keys", None) or ())
    if tied:
        model._keys_to_ignore_on_save = set(model._keys_to_ignore_on_save or ()) | tied


def fit(trainer, options: TrainOptions, *, base_model: str, extra: dict | None = None) -> dict:
    """Train (or resume), evaluate the best model, and write the output directory: the save_pretrained
    files, training_report.json and loss.png."""
    expect_tied_weights_missing(trainer.model)
    with progress_bars(options.progress):
        started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=True if options.resume else None)
        runtime = time.perf_counter() - started
        metrics = trainer.evaluate()  # the best model's, since it was loaded at the end
        args = trainer.args
        report = {
            "task": options.task,
            "base_model": base_model,
            "global_step": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "train_loss": result.training_loss,
            "eval_loss": metrics["eval_loss"],
            "val_perplexity": math.exp(metrics["eval_loss"]),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "train_examples": len(trainer.train_dataset),
            "validation_examples": len(trainer.eval_dataset),
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "precision": next(iter(precision()), "fp32"),
            "device": str(args.device),
            "world_size": args.world_size,
            "runtime_s": round(runtime, 2),
            "resumed": options.resume,
            "data_fingerprint": fingerprint(options.data),
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
            **(extra or {}),
            "log_history": trainer.state.log_history,
        }
        if trainer.is_world_process_zero():
            trainer.save_model(str(options.output))  # model.safetensors, config, generation_config, tokenizer
            # The Trainer pickles its arguments beside the model; the options are in the report instead, and
            # nothing pickled may travel with an artifact.
            Path(options.output, "training_args.bin").unlink(missing_ok=True)
            Path(options.output, "training_report.json").write_text(json.dumps(report, indent=2))
            plot_losses(
                trainer.state.log_history, Path(options.output) / "loss.png", title=f"{options.task} ({base_model})"
            )
        return report


def plot_losses(history: list[dict], path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:  # a GPU box with only the training stack (bench/gpu.py): the report has the losses
        print(f"note: matplotlib is not installed; {path.name} is not drawn", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=False), label="train")
    if evals:
        ax.plot(*zip(*evals, strict=False), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
