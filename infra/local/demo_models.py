"""The demo models `make run` serves: trained once from the project's own synthetic corpus and shipped in the
repository (infra/local/demo-models/, int8, a few MB in git), so that a first `make run` answers in seconds.

    python -m infra.local.demo_models [--workdir DIR]     # make demo-models: train them again, reproducibly

`source.json` beside them records what they were trained from (the corpus fingerprint, the prompt format, the
recipe); tests/unit/test_demo_models.py fails when the committed models no longer match the corpus or the format
this code writes, and `make run` then trains its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from infra.local import harness

SHIPPED = Path(__file__).resolve().parent / "demo-models"
SOURCE = SHIPPED / "source.json"
TASKS = ("headline", "article")
# The recipe. A compact vocabulary (training/compact_vocab.py) makes a step some 10x cheaper than over GPT-2's
# 50k tokens; the article model needs the most steps, to write its templates cleanly and follow its headline.
STEPS = {"headline": 600, "article": 1600}
BATCH_SIZE = {"headline": 32, "article": 16}
LEARNING_RATE = {"headline": 2e-3, "article": 3e-3}
EVAL_STEPS = 200
# What a shipped model directory holds: the int8 export and what serving and publish read beside it.
SHIPPED_FILES = (
    "config.json",
    "generation_config.json",
    "model.int8.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_report.json",
)


def recipe() -> dict:
    return {"steps": STEPS, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "compact_vocab": True}


def expected_source() -> dict:
    """What the shipped models must have been trained from, as this code would train them now."""
    from newsgen.prompt import PROMPT_FORMAT
    from training.demo_corpus import CORPUS_VERSION, fingerprint
    from training.model import TINY_CONFIG

    return {
        "corpus_version": CORPUS_VERSION,
        "corpus_fingerprint": fingerprint(),
        "prompt_format": PROMPT_FORMAT,
        "model": TINY_CONFIG,
        "recipe": recipe(),
    }


def shipped_models() -> dict[str, Path] | None:
    """The committed demo models, when they match the corpus and prompt format of this checkout."""
    if not SOURCE.is_file():
        return None
    if json.loads(SOURCE.read_text()) != expected_source():
        return None
    models = {task: SHIPPED / task for task in TASKS}
    if not all((path / name).is_file() for path in models.values() for name in SHIPPED_FILES):
        return None
    return models


def train_models(workdir: Path, data: Path | None = None, *, progress: bool = True) -> dict[str, Path]:
    """Prepare the corpus (the demo corpus, or DATA) and train both models into workdir; an interrupted run
    resumes from its last checkpoint."""
    import torch

    from training.demo_corpus import write_demo_csv
    from training.prepare import prepare
    from training.train import TrainOptions, train

    # A 128-wide model's matrices are too small to share between cores: a second thread waits more than it
    # works, and with any other process on the machine a step took 5-10 s instead of 0.3 s (2-core EPYC).
    torch.set_num_threads(1)
    prepared = workdir / "data"
    if not (prepared / "report.json").is_file():
        prepare([data or write_demo_csv(workdir / "demo-corpus.csv")], prepared, progress=progress)
    models = {task: workdir / task for task in TASKS}
    for task, path in models.items():
        if (path / "model.safetensors").is_file():
            continue
        started = time.perf_counter()
        print(f"training the {task} model ({STEPS[task]} steps on this CPU; progress and ETA below)…", flush=True)
        report = train(
            TrainOptions(
                task=task,
                data=prepared,
                output=path,
                max_steps=STEPS[task],
                eval_steps=EVAL_STEPS,
                save_steps=EVAL_STEPS,
                batch_size=BATCH_SIZE[task],
                learning_rate=LEARNING_RATE[task],
                resume=any((path / "checkpoints").glob("checkpoint-*")),
                progress=progress,
                compact_vocab=True,
            )
        )
        print(
            f"trained {task} in {time.perf_counter() - started:.0f}s "
            f"(validation perplexity {report['val_perplexity']:,.2f})",
            flush=True,
        )
    return models


def export(models: dict[str, Path], destination: Path = SHIPPED) -> None:
    """The int8 exports of trained models, as the repository ships them, and source.json."""
    from training.publish import stage_int8

    for task, path in models.items():
        target = destination / task
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        stage_int8(path, target)
        for name in [file.name for file in target.iterdir()]:
            if name not in SHIPPED_FILES:
                (target / name).unlink()
        report = json.loads((target / "training_report.json").read_text())
        report.pop("log_history", None)  # the losses are in the training run's directory, not the repository
        (target / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (destination / "source.json").write_text(json.dumps(expected_source(), indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make demo-models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=harness.STATE_DIR / "demo-models")
    args = parser.parse_args(argv)
    models = train_models(args.workdir)
    export(models)
    print(f"wrote {SHIPPED}: commit it", file=sys.stderr)


if __name__ == "__main__":
    main()
