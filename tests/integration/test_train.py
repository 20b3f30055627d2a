"""Training: resuming after a crash, data-parallel training on CPU (two ranks under torchrun, over gloo), the
article model's label mask, refusing to overwrite checkpoints, and the output directory a run leaves behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT, train_tiny

from newsgen.prompt import BOS, EOS, SEP
from training.dataset import IGNORE_INDEX, build_dataset, encode
from training.tokenizer import TINY, base_tokenizer
from training.train import CHECKPOINTS, TrainError, TrainOptions, checkpoints_in, train


class Crash(Exception):
    pass


@pytest.fixture
def crash_at_step(monkeypatch):
    """Make the next `train` die after optimizer step `step`, as a killed job would."""
    import transformers

    def arm(step: int):
        class CrashCallback(transformers.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    raise Crash(f"simulated crash at step {step}")

        init = transformers.Trainer.__init__

        def crashing_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.add_callback(CrashCallback())

        monkeypatch.setattr(transformers.Trainer, "__init__", crashing_init)

    return arm


@pytest.mark.slow
def test_resume_after_a_crash_ends_like_an_uninterrupted_run(demo_data, tmp_path, crash_at_step, monkeypatch):
    run = dict(steps=12, eval_steps=4, save_steps=4, logging_steps=4)
    whole = json.loads(
        (train_tiny(demo_data, tmp_path / "whole", "headline", **run) / "training_report.json").read_text()
    )

    crash_at_step(10)
    with pytest.raises(Crash):
        train_tiny(demo_data, tmp_path / "crashed", "headline", **run)
    monkeypatch.undo()
    assert [p.name for p in checkpoints_in(tmp_path / "crashed" / CHECKPOINTS)] == ["checkpoint-4", "checkpoint-8"]
    assert not (tmp_path / "crashed" / "training_report.json").exists()

    train_tiny(demo_data, tmp_path / "crashed", "headline", resume=True, **run)
    resumed = json.loads((tmp_path / "crashed" / "training_report.json").read_text())
    assert resumed["resumed"] is True
    assert resumed["global_step"] == whole["global_step"] == 12
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-3)  # measured: bit-identical
    # The same trajectory after the restart, not just the same end: every evaluation matches.
    assert evaluations(resumed) == pytest.approx(evaluations(whole), abs=1e-3)


def evaluations(report: dict) -> dict[int, float]:
    return {h["step"]: h["eval_loss"] for h in report["log_history"] if "eval_loss" in h}


def torchrun_train(data, output, *options: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m training train` on CPU with the tiny model; fails the test on a bad exit."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "training", "train", "--task", "headline", "--data", str(data), "--output", str(output)]
    command += ["--batch-size", "4", "--max-length", "32", "--logging-steps", "1", "--eval-steps", "2"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "newsgen"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [*command, "--save-steps", "2", *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_ranks_on_cpu_checkpoint_and_resume(demo_data, tmp_path):
    out = tmp_path / "model"
    first = torchrun_train(demo_data, out, "--max-steps", "4")
    report = json.loads((out / "training_report.json").read_text())
    # One process group of two: every step took one batch of 4 on each rank, a global batch of 8, so an epoch
    # is half as many steps as one process would take (before the fix, each rank trained alone as 0 of 1).
    assert report["world_size"] == 2 and report["global_step"] == 4
    assert report["epochs"] == pytest.approx(4 / math.ceil(report["train_examples"] / 8))
    checkpoint = out / CHECKPOINTS / "checkpoint-4"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    # Rank 0 alone writes the outputs and prints the summary (after the Trainer's own log lines).
    assert first.stdout.count('"global_step"') == 1
    assert json.loads(first.stdout[first.stdout.index('{\n  "task"') :])["global_step"] == 4

    # The resumed run starts from checkpoint-4's trainer state (marked here), not from step 0.
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    state["log_history"][-1]["marker"] = "checkpoint-4"
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    torchrun_train(demo_data, out, "--max-steps", "6", "--resume")
    resumed = json.loads((out / "training_report.json").read_text())
    assert resumed["resumed"] is True and resumed["world_size"] == 2 and resumed["global_step"] == 6
    assert resumed["epochs"] == pytest.approx(6 / math.ceil(resumed["train_examples"] / 8))
    history = resumed["log_history"]
    assert history[: len(state["log_history"])] == state["log_history"]  # the checkpoint's, marker included
    assert [h["step"] for h in history[len(state["log_history"]) :] if "loss" in h] == [5, 6]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4, 5, 6]
    assert (out / CHECKPOINTS / "checkpoint-6" / "rng_state_1.pth").is_file()


def test_article_labels_mask_the_headline_part():
    tokenizer = base_tokenizer(TINY)
    title, content = "Harbor town votes to rebuild its old wooden pier", "The vote was close. Work starts in May."
    example = encode("article", {"title": title, "content": content}, tokenizer, max_length=256)

    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt, target = ids(BOS + " " + title + SEP), ids(" " + content + EOS)  # prompt format 2
    assert prompt[0] == tokenizer.bos_token_id and prompt[-1] == tokenizer.convert_tokens_to_ids(SEP)
    assert target[-1] == tokenizer.eos_token_id
    assert example["input_ids"] == prompt + target
    assert example["labels"] == [IGNORE_INDEX] * len(prompt) + target
    assert example["attention_mask"] == [1] * len(prompt + target)


def test_article_dataset_masks_exactly_up_to_the_separator(demo_data):
    tokenizer = base_tokenizer(TINY)
    sep = tokenizer.convert_tokens_to_ids(SEP)
    examples = build_dataset(demo_data, "train", "article", tokenizer, max_length=96)
    assert examples
    for example in examples:
        masked = example["input_ids"].index(sep) + 1  # BOS + title + SEP
        assert example["labels"][:masked] == [IGNORE_INDEX] * masked
        assert example["labels"][masked:] == example["input_ids"][masked:]


def test_headline_labels_are_the_whole_text():
    tokenizer = base_tokenizer(TINY)
    example = encode(
        "headline", {"title": "Harbor town votes to rebuild its old wooden pier"}, tokenizer, max_length=64
    )
    assert example["labels"] == example["input_ids"] and example["labels"][-1] == tokenizer.eos_token_id


def test_existing_checkpoints_need_resume(headline_model, demo_data, tmp_path):
    before = sorted(p.name for p in (headline_model / CHECKPOINTS).iterdir())
    with pytest.raises(TrainError, match="already has checkpoints; pass --resume"):
        train(TrainOptions(task="headline", data=demo_data, output=headline_model))
    assert sorted(p.name for p in (headline_model / CHECKPOINTS).iterdir()) == before
    with pytest.raises(TrainError, match="--resume: no checkpoint"):
        train(TrainOptions(task="headline", data=demo_data, output=tmp_path / "new", resume=True))


def test_existing_checkpoints_on_the_command_line(headline_model, demo_data, capsys):
    from training.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--task", "headline", "--data", str(demo_data), "--output", str(headline_model)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--resume" in err and "\n" not in err


@pytest.mark.parametrize("model", ["headline_model", "article_model"])
def test_output_directory(model, request):
    out = request.getfixturevalue(model)
    report = json.loads((out / "training_report.json").read_text())
    assert report["task"] == model.split("_")[0]
    assert report["global_step"] > 0 and report["val_perplexity"] > 1
    assert {"eval_loss", "train_loss", "data_fingerprint", "options", "log_history"} <= report.keys()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    assert not list(out.glob("*.bin"))  # the Trainer's pickled training_args.bin is removed


def test_training_without_progress_prints_no_progress_bar(demo_data, tmp_path, capfd):
    """make run's quiet console: no tqdm bar from the Trainer or from save_pretrained's shard writer."""
    train(
        TrainOptions(
            task="headline",
            data=demo_data,
            output=tmp_path / "quiet",
            max_steps=2,
            eval_steps=2,
            save_steps=2,
            progress=False,
        )
    )
    out, err = capfd.readouterr()
    assert "it/s" not in out + err and "%|" not in out + err, (out + err)[-2000:]


def test_training_says_nothing_of_the_tied_output_head(demo_data, tmp_path, capfd):
    """GPT-2's lm_head is its embedding matrix, saved once: loading the best checkpoint at the end must not
    report it as a missing key, and the saved model is still the tied one."""
    from safetensors import safe_open
    from transformers import GPT2LMHeadModel

    out = tmp_path / "tied"
    train(TrainOptions(task="headline", data=demo_data, output=out, max_steps=2, eval_steps=2, save_steps=2))
    _, err = capfd.readouterr()
    assert "missing keys" not in err, err[-2000:]
    with safe_open(out / "model.safetensors", "pt") as saved:
        keys = set(saved.keys())
    assert "lm_head.weight" not in keys and "transformer.wte.weight" in keys
    model = GPT2LMHeadModel.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
