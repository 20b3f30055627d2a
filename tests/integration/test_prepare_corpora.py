"""Corpora in other schemas than All-the-News (a FakeNewsCorpus-style CSV, a JSONL with headline/body, a
Parquet with its own names) go through `prepare` and then train: the prepared data is what `train` expects."""

from __future__ import annotations

import json

import pytest
from conftest import train_tiny
from corpora import fake_news_corpus_csv, headline_body_jsonl, invented_rows, other_names_parquet

from training.prepare import parse_columns, prepare

SCHEMAS = {
    "fake-news-corpus-csv": (fake_news_corpus_csv, "fake.csv", None),
    "headline-body-jsonl": (headline_body_jsonl, "news.jsonl", "title=headline,content=body,publication=source"),
    "other-names-parquet": (other_names_parquet, "news.parquet", "title=heading,content=article_text"),
}


@pytest.mark.slow
@pytest.mark.parametrize("schema", SCHEMAS)
def test_prepared_corpus_trains(schema, tmp_path):
    write, name, columns = SCHEMAS[schema]
    source = write(tmp_path / name, invented_rows(60))
    report = prepare(
        [source], tmp_path / "data", validation_fraction=0.2, columns=parse_columns(columns), progress=False
    )
    assert report.rows_out == 60 and report.train_rows and report.validation_rows
    for task in ("headline", "article"):
        trained = json.loads(
            (
                train_tiny(tmp_path / "data", tmp_path / task, task, steps=2, eval_steps=2, save_steps=2)
                / "training_report.json"
            ).read_text()
        )
        assert trained["global_step"] == 2
        assert trained["data_fingerprint"] == report.fingerprint
