"""`train` says when the corpus is too small for the model (training.train.MIN_TOKENS_PER_PARAMETER)."""

import json
from pathlib import Path

from training.train import TrainOptions, corpus_size_warning

TINY_PARAMETERS = 6_862_848  # the tiny GPT-2 with newsgen's tokenizer
DISTILGPT2_PARAMETERS = 81_914_880


def examples(tokens: int, rows: int = 100) -> list[dict]:
    return [{"input_ids": range(tokens // rows)} for _ in range(rows)]


def options(base: str) -> TrainOptions:
    return TrainOptions(task="article", data=Path("data"), output=Path("out"), base=base)


def test_the_all_the_news_sample_is_too_small_for_a_model_from_scratch():
    warning = corpus_size_warning(options("tiny"), examples(24_900), TINY_PARAMETERS)
    assert warning is not None and warning.startswith(
        "the article training set has 24,900 tokens for a 6.9M-parameter model from scratch"
    )
    assert "about 20 are needed" in warning and "--base (distilgpt2, gpt2)" in warning


def test_enough_tokens_per_parameter_gives_no_warning():
    assert corpus_size_warning(options("tiny"), examples(20 * TINY_PARAMETERS + 100), TINY_PARAMETERS) is None
    # Fine-tuning a pretrained model asks far less of the corpus.
    assert corpus_size_warning(options("distilgpt2"), examples(900_000), DISTILGPT2_PARAMETERS) is None
    warning = corpus_size_warning(options("distilgpt2"), examples(24_900), DISTILGPT2_PARAMETERS)
    assert warning is not None and "model fine-tuned" in warning and "--base" not in warning


def test_the_training_report_keeps_the_warning(headline_model):
    report = json.loads((headline_model / "training_report.json").read_text())
    assert report["data_warning"].startswith("the headline training set has ")
