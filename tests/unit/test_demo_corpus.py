"""The demo corpus teaches the article model to follow its headline, and `make run` retrains when it changes."""

from __future__ import annotations

import csv

from bench.follow import first_sentence
from infra.local.run import source_key
from training import demo_corpus


def test_every_article_restates_its_headline_subject(tmp_path):
    path = demo_corpus.write_demo_csv(tmp_path / "demo.csv", rows=400)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 400
    openings, verbatim = set(), 0
    for row in rows:
        title = row["title"].removeprefix(f"{row['publication']}: ").removesuffix(f" - The {row['publication']}")
        subject = title.split()[0]  # "Senate", "Storm", "Governor": the headline's first word heads its subject
        sentence = first_sentence(row["content"])
        assert subject.casefold() in sentence.casefold().split(), (title, sentence)
        assert sentence.split()[0] == subject  # the first word to copy is the first word written
        openings.add(subject)
        verbatim += sentence.startswith(title)
    assert len(openings) > 100  # the common actors of news, not a few subjects learned by heart
    assert 0.3 < verbatim / len(rows) < 0.7  # about half open with the headline word for word


def test_the_corpus_is_deterministic_and_make_runs_key_follows_it(monkeypatch):
    assert demo_corpus.fingerprint() == demo_corpus.fingerprint()
    key = source_key(None)
    assert key.startswith("demo-corpus-") and key == source_key(None)
    monkeypatch.setattr(demo_corpus, "CLOSINGS", ["Nothing else happened."])
    assert source_key(None) != key  # another corpus: `make run` trains new demo models
    monkeypatch.undo()
    monkeypatch.setattr(demo_corpus, "CORPUS_VERSION", demo_corpus.CORPUS_VERSION + 1)
    assert source_key(None) != key
