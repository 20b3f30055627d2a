"""Token healing (a prompt's last word is spelled again by the model) and complete UTF-8 characters (no U+FFFD):
the constraints on a made-up vocabulary and model, then newsgen.generation with the trained tiny headline model on
every decoding path."""

import functools
from types import SimpleNamespace

import pytest
import torch

from newsgen import artifacts, generation, gpt2, prompt
from newsgen import tokenizer as tokenizers
from newsgen.processors import CompleteCharacters, TokenHealing, pending_continuations, read_words
from newsgen.schemas import GenerationParameters
from newsgen.store import LoadedModel, load_model_dir
from newsgen.tokenizer import ByteVocabulary

SPECIALS = {prompt.BOS: 0, prompt.EOS: 1, prompt.PAD: 2}
PIECES = [
    b"Storm", b"Storms", b"St", b"orm", b"Researchers", b" say", b" ", b"  ", b"Teachers", b" rain",
    b"\xe2\x80", b"\x99", b"s", b"\xef\xbf\xbd", b"\x80\x99",
]  # fmt: skip
BYTES = [name.encode() for name in SPECIALS] + PIECES
ID = {piece: i for i, piece in enumerate(BYTES)}


class FakeTokenizer:
    """A byte-level tokenizer over `pieces` (BYTES): longest match first, but the texts of `spellings` as given
    there (as BPE's merges spell some words otherwise); the special tokens as their names."""

    bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

    def __init__(self, pieces: list[bytes] = BYTES, spellings: dict[str, list[bytes]] | None = None):
        self.pieces, self.ids = pieces, {piece: i for i, piece in enumerate(pieces)}
        self.spellings = spellings or {}
        self.vocabulary = ByteVocabulary.of(pieces, set(SPECIALS.values()))

    def byte_vocabulary(self):
        return self.vocabulary

    def token_bytes(self, token_id: int) -> bytes:
        return self.pieces[token_id]

    def encode(self, text: str) -> list[int]:
        if text in self.spellings:
            return [self.ids[piece] for piece in self.spellings[text]]
        data, ids = text.encode(), []
        while data:
            best = max((p for p in self.pieces if data.startswith(p)), key=len)
            ids.append(self.ids[best])
            data = data[len(best) :]
        return ids

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": self.encode(texts) if isinstance(texts, str) else [self.encode(t) for t in texts]}

    def decode(self, ids, skip_special_tokens=False):
        skipped = set(SPECIALS.values()) if skip_special_tokens else set()
        return b"".join(self.pieces[i] for i in ids if i not in skipped).decode(errors="replace")


class FakeModel:
    """Scores of the next token after each of the last `logits_to_keep` tokens (all for 0), from a table {token:
    {next token: score}}; every other token scores -10. No cache: the decode loop passes it back as None."""

    def __init__(self, table: dict[bytes, dict[bytes, float]], pieces: list[bytes] = BYTES):
        self.table, self.pieces, self.ids = table, pieces, {piece: i for i, piece in enumerate(pieces)}
        self.device = torch.device("cpu")
        self.config = SimpleNamespace(n_positions=64, vocab_size=len(pieces))
        self.generation_config = SimpleNamespace(max_new_tokens=8, do_sample=False, num_beams=1)

    def __call__(self, input_ids, logits_to_keep=0, **kwargs):
        ids = input_ids[:, -logits_to_keep:] if logits_to_keep else input_ids
        logits = torch.full((*ids.shape, len(self.pieces)), -10.0)
        for row, tokens in enumerate(ids.tolist()):
            for position, token in enumerate(tokens):
                for after, score in self.table.get(self.pieces[token], {}).items():
                    logits[row, position, self.ids[after]] = score
        return SimpleNamespace(logits=logits, past_key_values=None)


def fake(table, tokenizer: FakeTokenizer | None = None, prompt_format: int = 1) -> LoadedModel:
    tokenizer = tokenizer or FakeTokenizer()
    manifest = SimpleNamespace(prompt_format=prompt_format)
    return LoadedModel("headline", "t", manifest, None, FakeModel(table, tokenizer.pieces), tokenizer)


def greedy(loaded, text: str, **params):
    # The fake models' habits are those of their prompt format: format 1's first word comes right after BOS.
    headline = prompt.headline_prompt(text, loaded.manifest.prompt_format)
    out = generation.generate(loaded, [headline], params=GenerationParameters(**params))
    return out.results[0][0]


# The tiny model's habit behind the issue: at a headline's start it wants "Researchers", and after a prompt's
# last token it goes on as at a start; but after a whole word it chose itself, it goes on with a word.
HEADLINE_HABITS = {
    prompt.BOS.encode(): {b"Researchers": 6, b"St": 4, b"Storms": 3, b"Storm": 2, b"Teachers": 1},
    b"Storm": {b"Researchers": 5, b" say": 1},
    b"St": {b"Researchers": 5, b"orm": 4},
    b"orm": {b"s": 5, b"Researchers": 4, b" say": 3},
    b"s": {b" say": 5},
    b"Storms": {b" say": 5},
    b" say": {prompt.EOS.encode(): 5},
    b"Teachers": {b" ": 5, b"  ": 4, b" rain": 3},
    b" ": {b" rain": 5},
    b" rain": {prompt.EOS.encode(): 5},
}


def test_compatible_tokens_finish_or_start_the_removed_bytes():
    vocabulary = FakeTokenizer().vocabulary
    names = lambda ids: sorted(BYTES[i] for i in ids)  # noqa: E731
    assert names(vocabulary.compatible(b"Storm")) == [b"St", b"Storm", b"Storms"]
    assert names(vocabulary.compatible(b"orm")) == [b"orm"]
    assert names(vocabulary.compatible(b" ")) == [b" ", b"  ", b" rain", b" say"]
    assert names(vocabulary.compatible(b"Stormy")) == [b"St", b"Storm"]
    assert vocabulary.compatible(b"<|EOS|>") == []  # special tokens are never offered
    assert sorted(vocabulary.compatible(b"")) == sorted(ID[p] for p in PIECES)


def test_heal_prompt_backs_up_the_last_word_or_space():
    vocabulary = FakeTokenizer().vocabulary
    ids = lambda *pieces: [ID[p] for p in pieces]  # noqa: E731
    bos = [0]
    assert generation.heal_prompt(bos + ids(b"Storm"), vocabulary) == (bos, b"Storm")
    assert generation.heal_prompt(bos + ids(b"St", b"orm"), vocabulary) == (bos, b"Storm")
    assert generation.heal_prompt(bos + ids(b"Teachers", b" "), vocabulary) == (bos + ids(b"Teachers"), b" ")
    assert generation.heal_prompt(bos + ids(b"Storm", b" rain"), vocabulary) == (bos + ids(b"Storm"), b" rain")
    # A word of more tokens keeps its first ones; the prompt format's tokens are never backed up.
    long_word = ids(b"St", b"orm", b"St", b"orm")
    assert generation.heal_prompt(bos + long_word, vocabulary) == (bos + ids(b"St"), b"ormStorm")
    assert generation.MAX_HEALED_TOKENS == 3
    assert generation.heal_prompt(bos, vocabulary) == (bos, b"")
    assert generation.heal_prompt(ids(b"Storm"), vocabulary) == (ids(b"Storm"), b"")  # nothing left to start from
    assert generation.heal_prompt(ids(b"Storm", b" rain"), vocabulary) == (ids(b"Storm"), b" rain")
    assert generation.heal_prompt([ID[b"Storm"], 1], vocabulary) == ([ID[b"Storm"], 1], b"")


def test_token_healing_constrains_until_the_removed_bytes_are_spelled():
    vocabulary = FakeTokenizer().vocabulary
    healing = TokenHealing(vocabulary, [b"Storm", b"", b" "], prompt_width=1)
    scores = torch.zeros(3, len(BYTES))
    allowed = lambda row: sorted(BYTES[i] for i in torch.isfinite(row).nonzero().flatten().tolist())  # noqa: E731
    first = healing(torch.zeros(3, 1, dtype=torch.long), scores.clone())
    assert allowed(first[0]) == [b"St", b"Storm", b"Storms"]
    assert torch.equal(first[1], scores[1])  # a prompt with nothing healed is left alone
    assert allowed(first[2]) == [b" rain", b" say"]  # after a space, a word: not " " nor "  "
    after_st = healing(torch.tensor([[0, ID[b"St"]], [0, ID[b"s"]], [0, ID[b" say"]]]), scores.clone())
    assert allowed(after_st[0]) == [b"orm"]
    assert torch.equal(after_st[1:], scores[1:])
    done = healing(torch.tensor([[0, ID[b"St"], ID[b"orm"]]] * 3), scores.clone())
    assert torch.equal(done, scores)


def test_fake_model_heals_the_glued_word_and_the_double_space():
    loaded = fake(HEADLINE_HABITS)
    storm = greedy(loaded, "Storm", details=True)
    # Before healing the prompt's "Storm" token was followed by the start-of-headline "Researchers".
    assert "Storm" + storm.text == "Storms say"
    assert [t.text for t in storm.tokens] == ["Storms", " say", prompt.EOS]
    assert storm.generated_tokens == 3 and storm.finish_reason == "eos_token"
    teachers = greedy(loaded, "Teachers ", details=True)
    assert "Teachers " + teachers.text == "Teachers rain"
    assert [t.text for t in teachers.tokens] == [" rain", prompt.EOS]


def test_a_stop_string_in_the_healed_prompt_end_does_not_stop():
    loaded = fake(HEADLINE_HABITS)
    storm = greedy(loaded, "Storm", stop=["Storm", "orm"])  # spelled again by "St" "orm": the prompt's, not a stop
    assert storm.text == "s say" and storm.finish_reason == "eos_token"
    said = greedy(loaded, "Storm", stop=[" sa"])
    assert said.text == "s" and said.finish_reason == "stop_sequence"


# A format-2 model that never learned " Satellite" nor " Bakery" (issue 23): it prefers the pieces of words it knows,
# and after a word it does not know it glues letters on. BPE spells "Satellitement" otherwise than " Satellite" +
# "ment", as GPT-2's tokenizer does (" S" "atell" "itement"); " workers" + "s" is how it spells "workerss".
WORD_PIECES = [name.encode() for name in SPECIALS] + [
    b" Satellite", b" S", b"atell", b"ite", b"itect", b"itement", b"ment", b" protests", b" Bakery", b" workers",
    b" work", b"ers", b"ors", b"s", b" rally", b" Pilot", b" Gov", b" Governor", b" Government",
]  # fmt: skip
WORD_SPELLINGS = {" Satellitement": [b" S", b"atell", b"itement"]}
WORD_HABITS = {
    prompt.BOS.encode(): {b" S": 6, b" Bakery": 5, b" Governor": 4, b" Pilot": 3, b" Government": 2, b" Gov": 1},
    b" S": {b"atell": 6},
    b"atell": {b"itect": 6, b"ite": 5},
    b"itect": {b" protests": 5},
    b" Satellite": {b"ment": 6, b" protests": 5},
    b" Bakery": {b" work": 6, b" workers": 3},
    b" work": {b"ers": 6},
    b"ers": {b"s": 6, b"ors": 5},
    b" workers": {b" rally": 6, b"s": 4, b"ors": 3},
    b"s": {b" rally": 5},
    b" Pilot": {b"s": 6, b" rally": 3},  # the model's own reading of "Pilot" here: "Pilots"
    b" Governor": {b" rally": 5},
    b" Gov": {b" rally": 3},
    b" protests": {prompt.EOS.encode(): 5},
    b" rally": {prompt.EOS.encode(): 5},
}


def words_model() -> LoadedModel:
    return fake(WORD_HABITS, FakeTokenizer(WORD_PIECES, WORD_SPELLINGS), prompt_format=2)


@pytest.mark.parametrize(
    ("text", "headline"),
    [("Satellite", "Satellite protests"), ("Bakery workers", "Bakery workers rally")],  # were "Satellitect", "workerss"
)
def test_a_complete_word_is_not_glued_onto_where_the_model_reads_it_ending(text, headline):
    result = greedy(words_model(), text, details=True)
    assert text + result.text == headline
    assert result.tokens[0].text == " " + text.split()[-1]  # the word as typed, then the next one


def test_a_word_is_extended_where_the_model_reads_a_longer_one():
    loaded = words_model()
    assert "Gov" + greedy(loaded, "Gov").text == "Governor rally"  # healing's use: a prompt ending inside a word
    assert "Pilot" + greedy(loaded, "Pilot").text == "Pilots rally"  # " Pilot" + "s" is how "Pilots" is spelled


def test_reading_a_word_end_counts_only_the_tokenizers_spellings():
    tokenizer = words_model().tokenizer
    vocabulary, ids = tokenizer.vocabulary, tokenizer.ids
    spells = functools.partial(generation._spells, tokenizer, vocabulary)
    logprobs = torch.full((2, len(WORD_PIECES)), -20.0)
    logprobs[0, ids[b" Satellite"]] = -1.0
    logprobs[1, ids[b"ment"]], logprobs[1, ids[b" protests"]] = -0.5, -1.0  # "ment" likelier, but not a spelling
    [reading] = read_words(vocabulary, [(ids[b" Satellite"],)], logprobs[None], spells)
    assert not reading.goes_on and reading.leaving == ((), None)
    logprobs[1, ids[b"s"]] = -0.5  # "Satellites" spelled " Satellite" + "s": now the likelier reading
    [reading] = read_words(vocabulary, [(ids[b" Satellite"],)], logprobs[None], spells)
    assert reading.goes_on and ids[b"s"] in reading.leaving[1] and ids[b"ment"] not in reading.leaving[1]


@pytest.mark.parametrize("seed", range(4))
def test_sampling_keeps_to_the_reading_of_a_word_end(seed):
    loaded = words_model()
    for text in ("Satellite", "Bakery workers"):
        result = greedy(loaded, text, do_sample=True, seed=seed, max_new_tokens=3)
        assert result.text and not result.text[0].isalnum(), (text, result.text)
    assert greedy(loaded, "Gov", do_sample=True, seed=seed).text.startswith("ern")


def test_a_completion_of_a_complete_word_starts_at_its_end():
    """/v1/completions answers with the continuation alone: after "Satellite" the next word, not "ment"."""
    from newsgen import completions
    from newsgen.service import NewsService
    from newsgen.settings import Settings

    loaded = words_model()
    service = NewsService(
        Settings(model_bucket="unused", watermark=False), store=SimpleNamespace(get=lambda *a: loaded)
    )
    for text, continuation in (("Satellite", " protests"), ("Bakery workers", " rally"), ("Gov", "ernor rally")):
        request = completions.CompletionRequest(model="headline", prompt=text, temperature=0, max_tokens=6)
        assert completions.complete(service, request).choices[0].text == continuation


@pytest.mark.parametrize("seed", range(8))
def test_fake_model_sampling_keeps_to_the_healed_word(seed):
    loaded = fake(HEADLINE_HABITS)
    storm = greedy(loaded, "Storm", do_sample=True, seed=seed, details=True)
    spelled = "".join(t.text for t in storm.tokens if t.id not in SPECIALS.values())
    assert spelled.startswith("Storm") and spelled == "Storm" + storm.text
    teachers = greedy(loaded, "Teachers ", do_sample=True, seed=seed, details=True)
    assert not teachers.text[:1].isspace() and teachers.tokens[0].text.startswith(" ")


def test_fake_model_is_made_to_finish_a_character():
    table = {
        prompt.BOS.encode(): {b"\xe2\x80": 5},
        b"\xe2\x80": {b"s": 5, b"\x80\x99": 4, b"\x99": 2},  # "s" would leave "\xe2\x80" unfinished: U+FFFD
        b"\x99": {b"s": 5},
        b"s": {b"\xef\xbf\xbd": 5},  # U+FFFD spelled out, as some training text has it
        b"\xef\xbf\xbd": {prompt.EOS.encode(): 5},
    }
    result = greedy(fake(table), "", details=True)
    assert result.text == "\u2019s"
    assert [t.text for t in result.tokens] == ["", "\u2019", "s", "", prompt.EOS]
    assert result.generated_tokens == 5
    cut = greedy(fake(table), "", max_new_tokens=1)  # the budget ends inside the character
    assert cut.text == "" and cut.finish_reason == "length" and cut.generated_tokens == 1


def test_pending_continuations():
    assert pending_continuations(b"") == 0
    assert pending_continuations(b"abc") == 0
    assert pending_continuations(b"a\xe2") == 2
    assert pending_continuations(b"\xe2\x80") == 1
    assert pending_continuations(b"\xe2\x80\x99") == 0
    assert pending_continuations(b"\xf0\x9f\x9a") == 1
    assert pending_continuations(b"\xc3") == 1
    assert pending_continuations(b"\x80\x80") == 0  # stray continuation bytes: no character to finish


def test_complete_characters_allows_only_continuations():
    vocabulary = FakeTokenizer().vocabulary
    constraint = CompleteCharacters(vocabulary)
    scores = torch.zeros(2, len(BYTES) + 2)  # a model's vocabulary may be wider than the tokenizer's
    out = constraint(torch.tensor([[0, ID[b"\xe2\x80"]], [0, ID[b"s"]]]), scores.clone())
    allowed = [BYTES[i] for i in torch.isfinite(out[0]).nonzero().flatten().tolist()]
    assert allowed == [b"\x99"]  # not "\x80\x99" (one continuation byte too many), nor EOS, nor "s"
    assert torch.equal(out[1], scores[1])
    finished = constraint(torch.tensor([[0, ID[b"\xe2\x80"], ID[b"\x99"]]]), scores[:1].clone())
    assert torch.equal(finished, scores[:1])  # ends in a non-ASCII byte, but the character is whole


def test_results_never_carry_a_replacement_character():
    tokenizer = FakeTokenizer()
    vocabulary = tokenizer.vocabulary
    params = GenerationParameters(details=True)

    def result(pieces, removed=b"", vocab=vocabulary):
        ids = [ID[p] for p in pieces]
        logprobs = torch.zeros(1, len(ids))
        return generation._result(tokenizer, vocab, ids, removed, 8, params, logprobs, 0)

    inside = result([b"s", b"\xe2\x80", b"s"])  # an unfinished character inside the text: its bytes dropped
    assert inside.text == "ss" and [t.text for t in inside.tokens] == ["s", "", "s"]
    tail = result([b"s", b"\xe2\x80"])
    assert tail.text == "s" and tail.generated_tokens == 2
    assert result([b"\x80\x99", b"s"]).text == "s"  # continuation bytes with no character to continue
    assert result([b"\xef\xbf\xbd", b"s"]).text == "s"
    assert result([b"Storms", b" say"], removed=b"Storm").text == "s say"
    assert result([b"St"], removed=b"Storm").text == ""  # the budget ended before the word was spelled
    # A tokenizer that is not byte-level: its decoded text, cleaned.
    plain = result([b"s", b"\xe2\x80", b"s"], vocab=None)
    assert plain.text == "ss" and all("\ufffd" not in t.text for t in plain.tokens)


# --- the trained tiny headline model --------------------------------------------------------------------------
PROMPTS = ["Storm", "Teach", "Storm clouds", "Teachers "]


@pytest.fixture(scope="module")
def served(headline_model):
    """The headline model as served: newsgen.gpt2's forward with newsgen.tokenizer."""
    manifest = artifacts.build_manifest(headline_model, task="headline", version="t", base_model="tiny")
    model, tokenizer = gpt2.load(headline_model), tokenizers.load(headline_model)
    return LoadedModel("headline", "t", manifest, headline_model, model, tokenizer)


@pytest.fixture(scope="module")
def fallback(headline_model):
    """The transformers fallback (SERVING_FORWARD=transformers): GPT2LMHeadModel and transformers' tokenizer."""
    manifest = artifacts.build_manifest(headline_model, task="headline", version="t", base_model="tiny")
    model, tokenizer = load_model_dir(headline_model, manifest, forward="transformers")
    return LoadedModel("headline", "t", manifest, headline_model, model, tokenizer)


def check_healed(loaded, text: str, result) -> None:
    """The prompt + text is the headline; the first tokens spell the prompt's backed-up end again; after a
    space comes a word, never a second space."""
    vocabulary = tokenizers.byte_vocabulary(loaded.tokenizer)
    ids = loaded.tokenizer(prompt.headline_prompt(text), add_special_tokens=False)["input_ids"]
    removed = generation.heal_prompt(ids, vocabulary)[1].decode()
    assert removed and (" " + text).endswith(removed)  # the format's space before a first word is backed up too
    pieces = "".join(t.text for t in result.tokens if t.id not in vocabulary.special_ids)
    assert pieces == removed + result.text or (result.text == "" and removed.startswith(pieces)), (text, pieces)
    headline = text + result.text
    assert "  " not in headline and "\ufffd" not in headline
    if text.endswith(" ") and result.text:
        assert not result.text[0].isspace()
    assert len(result.tokens) == result.generated_tokens


@pytest.mark.parametrize("decoding", [{}, {"do_sample": True, "seed": 5}, {"do_sample": True, "seed": 6}])
def test_tiny_model_heals_prompts(served, decoding):
    params = GenerationParameters(max_new_tokens=8, details=True, **decoding)
    out = generation.generate(served, [prompt.headline_prompt(p) for p in PROMPTS], n=1, params=params)
    for text, [result] in zip(PROMPTS, out.results, strict=True):
        check_healed(served, text, result)


def test_tiny_model_heals_on_the_fallback_and_in_beam_search(fallback):
    for decoding in ({}, {"num_beams": 2}):
        params = GenerationParameters(max_new_tokens=6, details=True, **decoding)
        out = generation.generate(fallback, [prompt.headline_prompt(p) for p in PROMPTS], params=params)
        for text, [result] in zip(PROMPTS, out.results, strict=True):
            check_healed(fallback, text, result)


def test_tiny_model_keeps_to_its_reading_of_a_word_end(served, fallback):
    """On either forward and in beam search, a prompt's last word comes back as typed, followed by a space,
    punctuation or the end, unless the model reads a longer word there (the text then goes on with letters)."""
    texts = ["Satellite", "Bakery workers", "Storm", "Gov"]
    prompts = [prompt.headline_prompt(t) for t in texts]
    for loaded, decodings in ((served, [{}]), (fallback, [{}, {"num_beams": 2}])):
        vocabulary = tokenizers.byte_vocabulary(loaded.tokenizer)
        encoded, removed, typed = generation.encode_prompts(loaded.tokenizer, prompts, vocabulary, "cpu")
        with torch.inference_mode():
            readings = generation.read_word_ends(loaded.model, loaded.tokenizer, vocabulary, encoded, removed, typed)
        for decoding in decodings:
            out = generation.generate(loaded, prompts, params=GenerationParameters(max_new_tokens=6, **decoding))
            for text, reading, [result] in zip(texts, readings, out.results, strict=True):
                assert result.text[:1].isalnum() == reading.goes_on, (text, reading, result.text)


def test_byte_vocabulary_of_either_tokenizer_is_the_tokens_bytes(served, fallback):
    ours = tokenizers.byte_vocabulary(served.tokenizer)
    theirs = tokenizers.byte_vocabulary(fallback.tokenizer)
    assert ours is tokenizers.byte_vocabulary(served.tokenizer)  # made once per tokenizer
    assert ours.table == theirs.table
    assert all(ours.bytes_of(i) == served.tokenizer.token_bytes(i) for i in range(0, len(ours), 97))
    specials = {served.tokenizer.convert_tokens_to_ids(t) for t in (*SPECIALS, prompt.SEP)}
    assert ours.special_ids == theirs.special_ids == specials
