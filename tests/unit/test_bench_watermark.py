"""The pieces `make bench-watermark` wraps around the serving code, kept in step with it (both broke silently
when generation began to read the model's device and to pass constraints to its processors)."""

from types import SimpleNamespace

import torch

from bench.watermark import NoEOS, watermark_last
from newsgen import generation


class FakeModel:
    config, generation_config, device = "config", "defaults", torch.device("cpu")

    def new_cache(self, rows: int, capacity: int) -> str:
        return f"cache {rows}x{capacity}"

    def __call__(self, **kwargs):
        return SimpleNamespace(logits=torch.zeros(1, 1, 5))


def test_no_eos_passes_the_model_through_and_bans_only_the_end_token():
    wrapped = NoEOS(FakeModel(), eos=3)
    assert (wrapped.config, wrapped.generation_config, wrapped.device) == ("config", "defaults", torch.device("cpu"))
    assert wrapped.new_cache(1, 8) == "cache 1x8"  # generation's preallocated KV cache is used through it
    logits = wrapped(input_ids=None).logits[0, 0]
    assert logits[3] == float("-inf") and torch.isfinite(logits[[0, 1, 2, 4]]).all()


def test_watermark_last_puts_the_processor_after_the_warpers_and_keeps_the_constraints():
    constraint, mark = (lambda ids, scores: scores), (lambda ids, scores: scores)
    decoding = {"do_sample": True, "temperature": 0.8, "top_k": 5}
    with watermark_last():
        last = list(generation._processors(decoding, mark, (constraint,)))
    assert last[0] is constraint and last[-1] is mark
    served = list(generation._processors(decoding, mark, (constraint,)))  # restored on leaving
    assert served[0] is constraint and served.index(mark) < len(served) - 1
