"""The demo models shipped in the repository are the ones this checkout's corpus and prompt format would train:
change the corpus, the prompt format, the tiny model or the recipe, and this fails until `make demo-models`
trains them again (and `make run` trains its own meanwhile)."""

from __future__ import annotations

import json

import pytest

from infra.local import demo_models
from newsgen.artifacts import INT8_WEIGHTS
from newsgen.prompt import PROMPT_FORMAT


def test_the_shipped_models_match_this_checkouts_corpus_format_and_recipe():
    recorded = json.loads(demo_models.SOURCE.read_text())
    expected = demo_models.expected_source()
    changed = sorted(key for key in expected if recorded.get(key) != expected[key])
    assert not changed, f"the shipped demo models were trained for another {', '.join(changed)}: run make demo-models"
    assert demo_models.shipped_models() == {task: demo_models.SHIPPED / task for task in demo_models.TASKS}


@pytest.mark.parametrize("task", demo_models.TASKS)
def test_each_shipped_model_is_an_int8_export_in_the_current_prompt_format(task):
    directory = demo_models.SHIPPED / task
    config = json.loads((directory / "config.json").read_text())
    report = json.loads((directory / "training_report.json").read_text())
    assert config["prompt_format"] == PROMPT_FORMAT
    assert report["task"] == task
    assert sorted(p.name for p in directory.iterdir()) == sorted(demo_models.SHIPPED_FILES)
    assert (directory / INT8_WEIGHTS).stat().st_size < 40_000_000


def test_a_changed_corpus_is_noticed(monkeypatch):
    from training import demo_corpus

    monkeypatch.setattr(demo_corpus, "CORPUS_VERSION", demo_corpus.CORPUS_VERSION + 1)
    assert demo_models.shipped_models() is None
