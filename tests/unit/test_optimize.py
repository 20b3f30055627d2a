"""int8 serving keeps quality: every GPT-2 matmul (Conv1D rewritten as Linear, and the lm_head) becomes int8,
and validation perplexity stays within 2 % of fp32."""

import copy

import torch

from newsgen import artifacts
from newsgen.optimize import conv1d_to_linear, quantize_int8
from newsgen.store import load_model_dir
from training.evaluate import perplexity


def load(path):
    manifest = artifacts.build_manifest(path, task="headline", version="t", base_model="tiny")
    return load_model_dir(path, manifest)


def test_conv1d_to_linear_is_exact(headline_model):
    model, tokenizer = load(headline_model)
    reference = copy.deepcopy(model)
    assert conv1d_to_linear(model) == 4 * model.config.n_layer
    ids = tokenizer(["<|endoftext|>City council approves"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-5)


def test_every_matmul_is_int8(headline_model):
    model, _ = load(headline_model)
    quantized = quantize_int8(model)
    kinds = {type(m).__name__ for m in quantized.modules()}
    assert "Conv1D" not in kinds
    dynamic = [m for m in quantized.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(dynamic) == 4 * quantized.config.n_layer + 1  # attention and MLP projections, plus the lm_head


def test_int8_perplexity_within_two_percent(headline_model, demo_data):
    model, tokenizer = load(headline_model)
    fp32 = perplexity(model, tokenizer, demo_data, "headline", max_length=48)
    int8 = perplexity(quantize_int8(model), tokenizer, demo_data, "headline", max_length=48)
    assert abs(int8 - fp32) / fp32 < 0.02, (fp32, int8)


def test_int8_export_loads_the_exact_model_the_server_would_build(headline_model, tmp_path):
    """Published int8 weights give bit-identical logits to quantising the fp32 checkpoint at load."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from newsgen.optimize import int8_tensors, load_int8

    built_at_load = quantize_int8(load(headline_model)[0])
    save_file(int8_tensors(built_at_load), str(tmp_path / artifacts.INT8_WEIGHTS))
    exported = load_int8(tmp_path / artifacts.INT8_WEIGHTS, AutoConfig.from_pretrained(headline_model))
    assert not any(p.is_meta for p in exported.parameters())
    ids = torch.randint(0, 50000, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(exported(ids).logits, built_at_load(ids).logits)


def test_int8_weights_that_do_not_fit_the_config_are_refused(headline_model, tmp_path):
    import pytest
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from newsgen.optimize import int8_tensors, load_int8

    tensors = int8_tensors(quantize_int8(load(headline_model)[0]))
    del tensors["transformer.wte.weight"]
    save_file(tensors, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="missing .*transformer.wte.weight"):
        load_int8(tmp_path / "w.safetensors", AutoConfig.from_pretrained(headline_model))
