import pytest

from newsgen import prompt
from training.model import build_model
from training.tokenizer import base_tokenizer


def test_real_gpt2_ids_offline():
    tokenizer = base_tokenizer("tiny")
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert tokenizer(" The New York Times", add_special_tokens=False)["input_ids"] == [383, 968, 1971, 3782]


def test_special_tokens_added_once_with_stable_ids():
    tokenizer = base_tokenizer("tiny")
    assert len(tokenizer) == 50260
    ids = tokenizer.convert_tokens_to_ids([prompt.BOS, prompt.EOS, prompt.PAD, prompt.SEP])
    assert ids == [50256, 50257, 50258, 50259]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (50256, 50257, 50258)
    assert prompt.add_special_tokens(tokenizer) == 0  # idempotent
    prompt.check_tokenizer(tokenizer)
    # Special tokens are single ids inside running text, never split into pieces.
    text = prompt.article_prompt("Hello world", prompt_format=1) + "Body" + prompt.EOS
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == [50256, 15496, 995, 50259, 25842, 50257]


def test_model_embeddings_match_tokenizer():
    tokenizer = base_tokenizer("tiny")
    model = build_model("tiny", tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id


def test_training_text_and_prompts_share_one_format():
    assert prompt.training_text("headline", " A title ") == (prompt.BOS, " A title" + prompt.EOS)
    head, body = prompt.training_text("article", "A title", "Some text.")
    assert head == prompt.article_prompt("A title") == prompt.BOS + " A title" + prompt.SEP
    assert body == " Some text." + prompt.EOS
    assert prompt.headline_prompt("Senate") == prompt.BOS + " Senate"
    assert prompt.headline_prompt("") == prompt.BOS  # the model's first token brings its own space
    assert prompt.prompts_for("article", ["A title"]) == [head]
    assert prompt.prompts_for("headline", ["Senate", ""]) == [prompt.BOS + " Senate", prompt.BOS]


def test_format_1_is_kept_for_the_models_trained_in_it():
    assert prompt.training_text("article", "A title", "Some text.", prompt_format=1) == (
        prompt.BOS + "A title" + prompt.SEP,
        "Some text." + prompt.EOS,
    )
    assert prompt.prompts_for("headline", ["Senate"], prompt_format=1) == [prompt.BOS + "Senate"]
    with pytest.raises(ValueError, match="prompt format 3 is not one this build speaks"):
        prompt.article_prompt("A title", prompt_format=3)


def test_a_texts_first_word_is_the_token_it_is_anywhere_else():
    """Format 2's point: after BOS and after the separator a word is the token it is mid-sentence, so a model
    learns one token per word and copies the headline's first word as it would any other."""
    tokenizer = base_tokenizer("tiny")
    ids = tokenizer(prompt.article_prompt("Pharmacists warn of shortages"), add_special_tokens=False)["input_ids"]
    elsewhere = tokenizer(" Pharmacists warn", add_special_tokens=False)["input_ids"]
    assert ids[1 : 1 + len(elsewhere)] == elsewhere
    old = tokenizer(prompt.article_prompt("Pharmacists warn", prompt_format=1), add_special_tokens=False)["input_ids"]
    assert old[1:-1] != elsewhere  # format 1: another split at the start of a text


def test_tokenizer_round_trips_through_save_pretrained(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = base_tokenizer("tiny")
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt.check_tokenizer(loaded)
    assert loaded("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert len(loaded) == 50260
