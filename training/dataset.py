"""Tokenised examples for the two tasks. The article model's labels mask the headline part (-100), so its
loss covers only the article it learns to write."""

from __future__ import annotations

import json
from pathlib import Path

from newsgen.prompt import training_text

IGNORE_INDEX = -100


def read_rows(data_dir: Path, split: str, task: str) -> list[dict]:
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `python -m training prepare` first")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if task == "article":
        rows = [r for r in rows if r.get("content")]
    return rows


def encode(task: str, row: dict, tokenizer, max_length: int) -> dict:
    prompt, target = training_text(task, row["title"], row.get("content"))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + target_ids)[:max_length]
    if task == "headline":
        labels = list(input_ids)  # a headline is learned whole; the BOS label is never predicted anyway
    else:
        labels = ([IGNORE_INDEX] * len(prompt_ids) + target_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def build_dataset(data_dir: Path, split: str, task: str, tokenizer, max_length: int) -> list[dict]:
    """A list of encoded examples: a map-style dataset the Trainer can index and shuffle."""
    examples = [encode(task, row, tokenizer, max_length) for row in read_rows(data_dir, split, task)]
    # An article whose headline fills the context leaves nothing to learn.
    return [e for e in examples if any(label != IGNORE_INDEX for label in e["labels"][1:])]


def fingerprint(data_dir: Path) -> str | None:
    report = Path(data_dir) / "report.json"
    if report.is_file():
        return json.loads(report.read_text()).get("fingerprint")
    return None
