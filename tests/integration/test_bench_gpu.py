"""bench/gpu.py, the GPU check (`make bench-gpu`), run here on the CPU with tiny sizes: the same training,
checkpoint, resume and serving code it runs on a GPU, and the JSON it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_with_tiny_sizes(tmp_path):
    output = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "newsgen"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "bench.gpu", "--device", "cpu", "--size", "tiny", "--output", str(output)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert figures["environment"]["device"] == "cpu" and figures["size"] == "tiny"

    training = figures["training"]
    assert training["device"] == "cpu" and training["precision"] == "fp32" and training["world_size"] == 1
    assert training["steps_per_s"] > 0 and training["tokens_per_s"] > 0
    resume = training["checkpoint_resume"]
    assert resume["ok"] and resume["checkpoint"] == "checkpoint-2" and resume["checkpoint_global_step"] == 2
    assert resume["first_run_steps"] == [1, 2] and resume["resumed_first_step"] == 3 and resume["global_step"] == 4
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(resume["checkpoint_files"])
    assert training["loss"]["step_4"] < training["loss"]["step_1"]

    generation = figures["generation"]
    assert generation["device"] == "cpu" and "bf16_b1_tok_s" not in generation  # bf16 serving only on cuda
    assert generation["fp32_b1_tok_s"] > 0 and generation["fp32_b8_tok_s"] > 0
    assert 1 <= generation["fp32_b1_tokens_per_call"] <= 16 and generation["fp32_b8_tokens_per_call"] >= 8
    assert result.stdout.rstrip().endswith("}") and json.loads(result.stdout[result.stdout.rindex('{\n  "command"') :])
