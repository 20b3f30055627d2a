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
        subject = title.split()[0]  # "Senate", "Storm", "Kelmoor": the headline's first word heads its subject
        sentence = first_sentence(row["content"])
        assert subject.casefold() in sentence.casefold().split(), (title, sentence)
        openings.add(sentence.split()[0])
        verbatim += sentence.startswith(title)
    assert len(openings) > 150  # many subjects, most of them invented: copying, not recall, predicts them
    assert 0.3 < verbatim / len(rows) < 0.7  # about half open with the headline word for word


def test_invented_subjects_are_new_words_split_into_many_pieces():
    import random

    from training.tokenizer import gpt2_tokenizer_offline

    tokenizer, rng = gpt2_tokenizer_offline(), random.Random(1)
    words = [demo_corpus.invented_word(rng) for _ in range(300)]
    pieces = [tokenizer.tokenize(word) for word in words]
    assert len(set(words)) > 280
    assert sum(len(p) > 1 for p in pieces) > 250  # as most held-out headlines' first words are
    assert len({piece for p in pieces for piece in p}) > 300  # not a few tokens to learn by heart


def test_the_corpus_is_deterministic_and_make_runs_key_follows_it(monkeypatch):
    assert demo_corpus.fingerprint() == demo_corpus.fingerprint()
    key = source_key(None)
    assert key.startswith("demo-corpus-") and key == source_key(None)
    monkeypatch.setattr(demo_corpus, "CLOSINGS", ["Nothing else happened."])
    assert source_key(None) != key  # another corpus: `make run` trains new demo models
    monkeypatch.undo()
    monkeypatch.setattr(demo_corpus, "CORPUS_VERSION", demo_corpus.CORPUS_VERSION + 1)
    assert source_key(None) != key
