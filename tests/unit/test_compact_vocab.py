"""Training over the corpus' tokens only (training/compact_vocab.py): the expanded model computes exactly the
compact one's logits for the tokens it was trained on, and one fixed, far lower logit for every other token."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config

from training import compact_vocab

FULL = GPT2Config(vocab_size=300, n_layer=2, n_head=2, n_embd=16, n_positions=32, bos_token_id=7, eos_token_id=7)
USED = [3, 7, 10, 42, 100, 299]


def trained_compact():
    model = compact_vocab.compact_model(FULL, USED, seed=0)
    with torch.no_grad():  # as if trained: a final layer norm that is not the identity
        model.transformer.ln_f.weight.uniform_(0.5, 1.5)
        model.transformer.ln_f.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_the_expanded_model_is_the_compact_one_on_used_tokens_and_a_fixed_floor_elsewhere():
    compact = trained_compact()
    full = compact_vocab.expand(compact, FULL, USED)
    ids = torch.tensor([[0, 3, 1, 5, 2, 4]])  # compact ids
    with torch.no_grad():
        expected = compact(input_ids=ids).logits
        logits = full(input_ids=torch.tensor(USED)[ids]).logits
    assert torch.allclose(logits[..., USED], expected, atol=1e-5)
    unused = [t for t in range(FULL.vocab_size) if t not in USED]
    assert torch.allclose(
        logits[..., unused], torch.full_like(logits[..., unused], compact_vocab.UNUSED_LOGIT), atol=1e-3
    )
    assert not full.config.tie_word_embeddings and full.config.vocab_size == FULL.vocab_size
    assert full.config.bos_token_id == 7  # the full vocabulary's special ids, not the compact ones


def test_the_collator_maps_ids_and_labels_and_keeps_the_ignore_index():
    def pad(features):
        return {key: torch.tensor([f[key] for f in features]) for key in features[0]}

    collate = compact_vocab.CompactCollator(pad, USED, FULL.vocab_size)
    batch = collate([{"input_ids": [7, 42, 299], "labels": [-100, 42, 299]}])
    assert batch["input_ids"].tolist() == [[1, 3, 5]]
    assert batch["labels"].tolist() == [[-100, 3, 5]]


def test_used_ids_hold_every_special_token_and_every_example_token():
    class Tokenizer:
        all_special_ids = (50256, 50257)

    assert compact_vocab.used_token_ids(Tokenizer(), [{"input_ids": [5, 9]}], [{"input_ids": [9, 1]}]) == [
        1,
        5,
        9,
        50256,
        50257,
    ]


def test_compact_vocab_needs_a_model_from_scratch(tmp_path):
    from training.train import TrainError, TrainOptions, check_options

    with pytest.raises(TrainError, match="--compact-vocab trains a model from scratch"):
        check_options(
            TrainOptions(task="article", data=tmp_path, output=tmp_path, base="distilgpt2", compact_vocab=True)
        )


def test_unused_tokens_are_suppressed_in_decoding_even_in_int8():
    """Activations quantised per tensor move the fixed logit by tens of nats, so the expanded model also lists
    the unused tokens in its generation config, and decoding never writes one."""
    from newsgen.optimize import quantize_int8
    from newsgen.processors import suppress

    full = compact_vocab.expand(trained_compact(), FULL, USED)
    unused = [t for t in range(FULL.vocab_size) if t not in USED]
    assert full.generation_config.suppress_tokens == unused
    with torch.no_grad():
        logits = quantize_int8(full)(input_ids=torch.tensor([USED])).logits[0]
    kept = suppress(unused)(None, logits)
    assert torch.isinf(kept[:, unused]).all() and torch.isfinite(kept[:, USED]).all()
    only_unused = torch.full_like(logits, -float("inf"))
    only_unused[:, unused[:3]] = 1.0  # the constraints left nothing else: the row is kept as it was
    assert torch.equal(suppress(unused)(None, only_unused), only_unused)
