"""The README's speed section is what bench/run.py renders from the committed bench/results.json (and
bench/cold.json where present), so the two cannot drift; and the bench's byte counting on small models."""

import json
from pathlib import Path

import pytest

from bench import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["results.json", "results-avx2.json"])
def test_readme_speed_sections_are_rendered_from_their_json(name):
    results = json.loads((ROOT / "bench" / name).read_text())
    rendered = run.render(results, run.read_cold())
    assert run.readme_section((ROOT / "README.md").read_text(), run.markers(results)) == rendered, (
        f"README.md's section for bench/{name} differs from it: `python -m bench.run --render --output bench/{name}`"
    )
    assert results["machine"]["cpu_model"] in rendered


def test_an_isa_capped_run_names_its_cap_and_has_its_own_section():
    results = json.loads((ROOT / "bench" / "results-avx2.json").read_text())
    assert results["machine"]["isa_cap"]["environment"] == run.ISA_CAPS["avx2"]
    assert run.markers(results) == run.ISA_MARKERS["avx2"]
    assert "held to **AVX2**" in run.render(results)


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{run.MARKERS[0]}\nstale\n{run.MARKERS[1]}\nafter\n")
    run.update_readme(readme, results)
    text = readme.read_text()
    assert text.startswith(f"before\n{run.MARKERS[0]}\n") and text.endswith(f"{run.MARKERS[1]}\nafter\n")
    assert "stale" not in text and run.readme_section(text) == run.render(results, run.read_cold())


def test_weight_bytes_count_matmuls_whole_and_embeddings_by_the_row():
    pytest.importorskip("torch")
    from transformers import GPT2Config, GPT2LMHeadModel

    from newsgen.optimize import quantize_int8

    config = GPT2Config(vocab_size=100, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)
    params = sum(p.numel() for p in model.parameters())  # the tied lm_head counted once
    # fp32: every parameter at 4 bytes, the position table as one row (of its 16), the tied embedding table
    # whole (the lm_head) and one of its rows again (the lookup).
    assert run.torch_weight_bytes(model) == 4 * (params - 15 * 8 + 8)
    int8 = run.torch_weight_bytes(quantize_int8(model))
    matmul = 2 * (8 * 24 + 8 * 8 + 8 * 32 + 32 * 8)  # per layer: c_attn, c_proj, c_fc, mlp.c_proj; 1 byte each
    channels = 2 * (24 + 8 + 32 + 8) + 100  # a scale and a zero point (8 bytes) per output channel, lm_head's too
    fp32 = 2 * (24 + 8 + 32 + 8) + 2 * 4 * 8 + 2 * 8 + 8 + 8  # biases, layer norms, ln_f, a row of wte and of wpe
    assert int8 == matmul + 100 * 8 + 8 * channels + 4 * fp32
