"""`python -m bench.follow` end to end on the tiny article model: the served path writes the articles and
the JSON has the figures (the 80 % target needs the real demo training: see bench/follow.json)."""

from __future__ import annotations

import json

import pytest

from bench import follow


def run_follow(model, headlines, output, unseen=""):
    options = {"--model": model, "--headlines": headlines, "--samples": 2, "--max-new-tokens": 24, "--output": output}
    options["--unseen-headlines"] = unseen
    follow.main([str(part) for option in options.items() for part in option])


@pytest.mark.slow
def test_follow_writes_its_figures(article_model, tmp_path):
    headlines = tmp_path / "held-out.tsv"
    headlines.write_text(
        "Senate\tSenate passes sweeping budget bill after late night session\nFalconers\tFalconers vote to strike\n"
    )
    unseen = tmp_path / "unseen.tsv"
    unseen.write_text("Glassblowers\tGlassblowers revive an old workshop\n")
    output = tmp_path / "follow.json"
    run_follow(article_model, headlines, output, unseen)
    result = json.loads(output.read_text())
    assert result["articles"] == 4 and result["headlines"] == 2
    hits = [a["carries_noun"] for h in result["per_headline"] for a in h["articles"]]
    assert result["carrying_main_noun"] == sum(hits) and result["share"] == sum(hits) / 4
    assert result["met"] == (result["share"] >= follow.TARGET)
    assert [h["noun_in_corpus"] for h in result["per_headline"]] == [True, False]  # the corpus has no falconers
    assert result["model"]["decoding"]["do_sample"] is True and result["machine"]["cpu"]
    greedy = result["greedy_unwatermarked"]  # one greedy article per headline: the model's own preference
    assert greedy["articles"] == 2 and len(greedy["first_sentences"]) == 2
    assert greedy["share"] == greedy["carrying_main_noun"] / 2
    assert result["sampled_unwatermarked"]["articles"] == 4  # as served, but without the watermark's bias
    assert result["unseen_nouns"]["articles"] == 2 and result["unseen_nouns"]["headlines_file"] == str(unseen)
    again = tmp_path / "again.json"
    run_follow(article_model, headlines, again, unseen)
    assert json.loads(again.read_text())["per_headline"] == result["per_headline"]  # seeded: reproducible


def test_unseen_headlines_must_be_about_nouns_the_corpus_never_uses(article_model, tmp_path):
    headlines, unseen = tmp_path / "held-out.tsv", tmp_path / "unseen.tsv"
    headlines.write_text("Senate\tSenate passes sweeping budget bill after late night session\n")
    unseen.write_text("Farmers\tFarmers warn drought could cut wheat harvest by half\n")
    with pytest.raises(SystemExit, match=r"the demo corpus uses \['Farmers'\]"):
        run_follow(article_model, headlines, tmp_path / "out.json", unseen)


def test_follow_names_a_missing_model(tmp_path):
    with pytest.raises(SystemExit, match="no trained model there"):
        follow.main(["--model", str(tmp_path), "--output", str(tmp_path / "out.json")])
