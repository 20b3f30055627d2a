"""newsgen.gpt2, the serving forward without transformers' modeling module, computes what transformers'
GPT2LMHeadModel computes: the same logits (fp32, and int8 as we load and export it) over a left-padded batch of
prompts of different lengths, at the prefill and at cached decode steps; newsgen.generation gives the same
texts with it; and it imports no transformers at all."""

import json
import subprocess
import sys

import pytest
import torch

from newsgen import artifacts, gpt2, prompt
from newsgen.store import LoadedModel, load_model_dir

ATOL = 1e-5
HEADLINES = ["Harbor ferry line approved", "Rain", "City council votes to close the old library after a long debate"]
DECODE_STEPS = 6


def reference(path, export="fp32"):
    """transformers' model, loaded as the store loads it today (an int8 export through newsgen.optimize)."""
    manifest = artifacts.build_manifest(path, task="headline", version="t", base_model="tiny", export=export)
    return load_model_dir(path, manifest)


@pytest.fixture(scope="module")
def int8_export(headline_model, tmp_path_factory):
    """The headline model's int8 export, staged as `publish --export int8` stages it."""
    from training.publish import stage_int8

    return stage_int8(headline_model, tmp_path_factory.mktemp("int8"))


def left_padded(tokenizer):
    encoded = tokenizer(
        [prompt.headline_prompt(h) for h in HEADLINES], return_tensors="pt", padding=True, add_special_tokens=False
    )
    assert tokenizer.padding_side == "left" and len(set(encoded["attention_mask"].sum(1).tolist())) == len(HEADLINES)
    return encoded["input_ids"], encoded["attention_mask"]


def logits_pairs(ref, ours, tokenizer, capacity=None):
    """(transformers', ours) logits: the prefill's at every real position, then DECODE_STEPS cached steps fed
    the reference's greedy tokens, called as newsgen.generation calls the model."""
    ids, attention = left_padded(tokenizer)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    cache = ours.new_cache(ids.shape[0], capacity) if capacity else None
    pairs = []
    with torch.inference_mode():
        r = ref(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True)
        o = ours(input_ids=ids, attention_mask=attention, position_ids=positions, cache=cache)
        real = attention.bool()
        pairs.append((r.logits[real], o.logits[real]))
        for _ in range(DECODE_STEPS):
            token = r.logits[:, -1].argmax(-1)[:, None]
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            r = ref(input_ids=token, cache=r.cache, attention_mask=attention, position_ids=positions, use_cache=True)
            o = ours(input_ids=token, cache=o.cache, attention_mask=attention, position_ids=positions)
            pairs.append((r.logits, o.logits))
    return pairs


def assert_identical(pairs, exact=False):
    for step, (r, o) in enumerate(pairs):
        assert r.shape == o.shape, step
        if exact:
            assert torch.equal(r, o), (step, (r - o).abs().max().item())
        else:
            assert torch.allclose(r, o, atol=ATOL, rtol=0), (step, (r - o).abs().max().item())


def test_fp32_logits_equal_transformers(headline_model):
    from transformers.activations import ACT2FN

    ref, tokenizer = reference(headline_model)
    ours = gpt2.load(headline_model)
    assert_identical(logits_pairs(ref, ours, tokenizer))
    # With transformers' own GELU (7 tensor ops; ours is one fused kernel) every op is the same: bit for bit.
    ours.gelu = ACT2FN["gelu_new"]
    assert_identical(logits_pairs(ref, ours, tokenizer), exact=True)


def test_int8_export_logits_equal_transformers(int8_export):
    ref, tokenizer = reference(int8_export, export="int8")
    ours = gpt2.load(int8_export, export="int8")
    assert_identical(logits_pairs(ref, ours, tokenizer))


def test_int8_quantised_at_load_is_the_int8_export(headline_model, int8_export):
    """An fp32 export served as int8 (the store's quantize="int8") gets exactly the export's integers and
    scales, and transformers' quantize_int8 model's logits."""
    from newsgen.optimize import optimize_for_cpu

    config = gpt2.Config.from_json(json.loads((headline_model / "config.json").read_text()))
    at_load = gpt2.quantize_int8(gpt2.read_tensors(headline_model), config)
    exported = gpt2.read_tensors(int8_export, "int8")
    assert sorted(at_load) == sorted(exported)
    for name, tensor in exported.items():
        assert torch.equal(at_load[name], tensor), name
    ref, tokenizer = reference(headline_model)
    assert_identical(logits_pairs(optimize_for_cpu(ref, "int8"), gpt2.load(headline_model, quantize="int8"), tokenizer))


def test_a_cache_grows_past_its_capacity(headline_model):
    ref, tokenizer = reference(headline_model)
    assert_identical(
        logits_pairs(ref, gpt2.load(headline_model), tokenizer, capacity=left_padded(tokenizer)[0].shape[1] + 2)
    )


@pytest.mark.parametrize("export", ["fp32", "int8"])
def test_generation_gives_the_same_texts(export, headline_model, int8_export):
    """newsgen.generation, unchanged, with our forward in place of transformers' model: the same greedy and
    seeded sampled texts and log-probabilities, with the watermark on, and the same decoding defaults."""
    from newsgen import generation
    from newsgen.schemas import GenerationParameters
    from newsgen.watermark import GreenlistWatermark

    path = headline_model if export == "fp32" else int8_export
    ref, tokenizer = reference(path, export)
    ours = gpt2.load(path, export)
    manifest = artifacts.build_manifest(path, task="headline", version="t", base_model="tiny", export=export)
    for name in generation.DECODING_FIELDS:
        assert getattr(ours.generation_config, name, None) == getattr(ref.generation_config, name, None), name
    prompts = [prompt.headline_prompt(h) for h in HEADLINES]
    for params in (
        GenerationParameters(max_new_tokens=12, do_sample=False, details=True),
        GenerationParameters(max_new_tokens=12, seed=7, details=True),  # the tuned defaults: sampling, penalties
    ):
        texts = []
        for model in (ref, ours):
            loaded = LoadedModel("headline", "t", manifest, path, model, tokenizer)
            watermark = GreenlistWatermark(int(model.config.vocab_size), key=1234)
            out = generation.generate(loaded, prompts, n=2 if params.seed else 1, params=params, watermark=watermark)
            rows = [r for prompt_rows in out.results for r in prompt_rows]
            texts.append(([r.text for r in rows], [t.logprob for r in rows for t in r.tokens]))
        assert texts[0][0] == texts[1][0]
        assert texts[0][1] == pytest.approx(texts[1][1], abs=1e-4)


def test_serving_forward_imports_no_transformers(headline_model, int8_export):
    code = f"""
import sys, torch
from newsgen import gpt2
for path, export in (({str(headline_model)!r}, "fp32"), ({str(int8_export)!r}, "int8")):
    model = gpt2.load(path, export)
    model(torch.tensor([[50256, 464, 1748]]), logits_to_keep=1)
print(sorted(m for m in sys.modules if m.split(".")[0] == "transformers"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_configs_it_does_not_compute_are_refused():
    base = {"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 4, "n_layer": 1, "n_head": 2}
    assert gpt2.Config.from_json(base).n_inner is None
    for change in ({"model_type": "gpt_neo"}, {"add_cross_attention": True}, {"activation_function": "relu"}):
        with pytest.raises(ValueError):
            gpt2.Config.from_json({**base, **change})


def test_generation_sizes_the_cache_exactly(headline_model):
    """newsgen.generation asks for prompt + max_new_tokens positions before the prefill: no regrowth. The prompt is
    the healed one (its last word backed up, newsgen.generation.heal_prompt): shorter than the tokenizer's. The
    pass before it, over the prompts as typed, asks for just as many positions as they have."""
    from newsgen import generation
    from newsgen import tokenizer as tokenizers
    from newsgen.schemas import GenerationParameters

    ours, tokenizer = gpt2.load(headline_model), tokenizers.load(headline_model)
    caches, new_cache = [], ours.new_cache
    ours.new_cache = lambda batch, capacity: caches.append(new_cache(batch, capacity)) or caches[-1]
    manifest = artifacts.build_manifest(headline_model, task="headline", version="t", base_model="tiny")
    loaded = LoadedModel("headline", "t", manifest, headline_model, ours, tokenizer)
    params = GenerationParameters(max_new_tokens=5, do_sample=False, no_repeat_ngram_size=0)
    prompts = [prompt.headline_prompt(h) for h in HEADLINES]
    out = generation.generate(loaded, prompts, params=params)
    healed = generation.encode_prompts(tokenizer, prompts, tokenizer.byte_vocabulary(), "cpu")[0]
    longest = healed["input_ids"].shape[1]
    assert longest < left_padded(tokenizer)[0].shape[1]
    # First the pass that reads each prompt's last word as typed (generation.read_word_ends): the prompts' length.
    typed = left_padded(tokenizer)[0].shape[1]
    shapes = [(len(HEADLINES), ours.config.n_head, width) for width in (typed, longest + 5)]
    assert [tuple(c.kv.shape[2:5]) for c in caches] == shapes
    assert max(r.generated_tokens for rows in out.results for r in rows) <= 5
