"""The training CLI names the problem in one line instead of a traceback."""

import subprocess
import sys

from conftest import ROOT


def run(*args):
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_missing_input_file(tmp_path):
    result = run("prepare", "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.csv'}: no such file"


def test_train_without_prepared_data(tmp_path):
    result = run("train", "--task", "headline", "--data", str(tmp_path), "--output", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "run `python -m training prepare` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_choice_is_argparse_usage(tmp_path):
    result = run("train", "--task", "poem", "--data", str(tmp_path), "--output", str(tmp_path / "m"))
    assert result.returncode == 2 and "invalid choice: 'poem'" in result.stderr
