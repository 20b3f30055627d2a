"""bench.follow's scoring: the main noun in an article's first sentence, on a small hand-made case."""

from __future__ import annotations

import pytest

from bench.follow import FollowError, HeldOut, carries, first_sentence, read_headlines, score


def test_first_sentence_and_noun_forms():
    assert first_sentence("The Senate passed it on Monday. Then more.") == "The Senate passed it on Monday."
    assert first_sentence("No end in sight") == "No end in sight"
    assert first_sentence("Costs rose 3.5 percent! Then") == "Costs rose 3.5 percent!"
    assert carries("the senate's vote", "Senate")
    assert carries("Senators said so.", "Senate") is False
    assert carries("The storms hit.", "Storm") and carries("A nurse spoke.", "Nurses")
    assert carries("Two wildfires burn.", "Wildfire") and not carries("Firefighters came.", "fire")


def test_score_counts_first_sentences_and_splits_by_corpus_vocabulary():
    items = [HeldOut("Senate passes budget bill after long night", "Senate"), HeldOut("Zookeepers cheer", "Zookeepers")]
    articles = [
        ["Senate passed the budget bill on Monday. More.", "Lawmakers met. The Senate then voted."],
        ["On Friday, zookeepers cheered the birth.", "Keepers cheered. Zookeepers too."],
    ]
    figures = score(items, articles, vocabulary={"senate", "budget"})
    assert (figures["articles"], figures["carrying_main_noun"], figures["share"]) == (4, 2, 0.5)
    assert figures["by_noun"]["in_corpus"] == {"articles": 2, "carrying_main_noun": 1, "share": 0.5}
    assert figures["by_noun"]["not_in_corpus"] == {"articles": 2, "carrying_main_noun": 1, "share": 0.5}
    assert [a["carries_noun"] for a in figures["per_headline"][0]["articles"]] == [True, False]
    assert figures["per_headline"][1]["noun_in_corpus"] is False


def test_headlines_file_is_checked(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("# comment\nSenate\tSenate passes budget bill\n\n")
    assert read_headlines(good) == [HeldOut("Senate passes budget bill", "Senate")]
    typo = tmp_path / "typo.tsv"
    typo.write_text("Senat\tSenate passes budget bill\n")
    with pytest.raises(FollowError, match=r"typo.tsv:1: the main noun 'Senat' is not a word of the headline"):
        read_headlines(typo)
    no_tab = tmp_path / "no-tab.tsv"
    no_tab.write_text("Senate passes budget bill\n")
    with pytest.raises(FollowError, match=r"no-tab.tsv:1: expected 'main noun<TAB>headline'"):
        read_headlines(no_tab)


def test_the_committed_held_out_list_is_valid_and_held_out():
    from bench.follow import HEADLINES, corpus_titles

    items = read_headlines(HEADLINES)
    assert len(items) == 50
    assert not corpus_titles() & {" ".join(i.headline.casefold().split()) for i in items}


def test_clean_text_counts_repeated_sentences_and_words_the_corpus_never_uses():
    from bench.follow import non_words, repeats_a_sentence

    vocabulary = {"silver", "lake", "harbor", "view", "the", "plan", "stalled", "twice", "in", "council", "met"}
    assert non_words("The plan stalled in Silverview, then Harbor View.", vocabulary) == ["silverview", "then"]
    assert repeats_a_sentence("The plan stalled twice. Council met. The plan stalled twice!")
    assert not repeats_a_sentence("The plan stalled twice. The plan stalled in Harbor View.")
    items = [HeldOut("Council meets in Silver Lake", "Council")]
    figures = score(items, [["Council met in Silverview. Council met in Silverview."]], vocabulary)
    assert figures["with_repeated_sentence"] == {"articles": 1, "share": 1.0}
    assert figures["with_non_word"] == {"articles": 1, "share": 1.0}
