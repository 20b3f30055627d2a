"""Validation perplexity of a causal LM on prepared data, with the training's own example encoding (so the
article model is scored on the article part only)."""

from __future__ import annotations

import math
from pathlib import Path

from training.dataset import IGNORE_INDEX, build_dataset


def perplexity(
    model,
    tokenizer,
    data_dir: Path,
    task: str,
    *,
    split: str = "validation",
    max_length: int = 256,
    batch_size: int = 16,
) -> float:
    import torch

    examples = build_dataset(data_dir, split, task, tokenizer, max_length)
    total_loss, total_tokens = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            labels = torch.full((len(batch), width), IGNORE_INDEX)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, e in enumerate(batch):
                n = len(e["input_ids"])
                ids[row, :n] = torch.tensor(e["input_ids"])
                labels[row, :n] = torch.tensor(e["labels"])
                mask[row, :n] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            total_loss += loss.item()
            total_tokens += int((targets != IGNORE_INDEX).sum())
    return math.exp(total_loss / max(total_tokens, 1))
