"""The package as `make venv` builds it (pip install -e .): no setuptools warnings, the playground inside."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile

from conftest import ROOT

PLAYGROUND = ["handlers/playground/index.html", "handlers/playground/app.js", "handlers/playground/style.css"]


def test_the_wheel_builds_without_warnings_and_carries_the_playground(tmp_path):
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for directory in set(setuptools["package-dir"].values()):
        shutil.copytree(ROOT / directory, source / directory, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-3000:]
    assert "Warning" not in output, output[-3000:]
    (wheel,) = tmp_path.glob("newsgen-*.whl")
    assert set(PLAYGROUND) <= set(zipfile.ZipFile(wheel).namelist())
