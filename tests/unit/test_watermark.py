"""The watermark's keys and its green lists (newsgen.watermark); generation and detection through the
service and the API are in test_watermark_service.py."""

import json
import stat

import pytest
import torch

from newsgen import watermark
from newsgen.watermark import (
    GreenlistWatermark,
    Keyring,
    PromptCopies,
    WatermarkUnavailable,
    key_id,
    keyring_with_new_key,
    load_keyring,
)


def test_a_local_keyring_is_created_once_private_and_reused(tmp_path):
    path = tmp_path / "state" / "watermark-keys.json"
    first = load_keyring(file=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(file=path) == first and first.current == key_id(first.current_key())


def test_rotation_keeps_the_old_keys_for_detection():
    old = keyring_with_new_key()
    new = keyring_with_new_key(old)
    assert new.current != old.current and old.current in new.keys and len(new.keys) == 2


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"current": "x", "keys": {}}',
        '{"current": "x", "keys": {"y": 5}}',
        '{"current": "abc", "keys": {"abc": 5}}',
    ],
)
def test_a_broken_keyring_is_refused(tmp_path, text):
    path = tmp_path / "keys.json"
    path.write_text(text)
    with pytest.raises(WatermarkUnavailable):
        load_keyring(file=path)


def test_no_keyring_configured_is_a_clear_error():
    with pytest.raises(WatermarkUnavailable, match="WATERMARK_KEYS_PARAMETER"):
        load_keyring()


def test_the_keyring_is_read_from_an_ssm_secure_string(s3_endpoint):
    import boto3

    ring = keyring_with_new_key()
    boto3.client("ssm").put_parameter(
        Name="/newsgen/test/watermark", Value=ring.model_dump_json(), Type="SecureString", Overwrite=True
    )
    assert load_keyring(parameter="/newsgen/test/watermark") == ring
    with pytest.raises(WatermarkUnavailable, match="cannot be read") as missing:
        load_keyring(parameter="/newsgen/test/absent")
    assert "absent" not in missing.value.message  # no resource names in what may reach a client


def test_cached_green_lists_score_exactly_as_the_library(monkeypatch):
    processor = GreenlistWatermark(vocab_size=50260, key=123456789, cache_size=3)  # evictions too
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        ids = torch.randint(0, 50260, (4, 7), generator=generator)
        ids[1, -1] = ids[0, -1]  # a cached previous token
        scores = torch.randn(4, 50260, generator=generator)
        assert torch.equal(processor(ids, scores), processor.library(ids, scores))
    assert len(processor._masks) == 3


BOS, SEP, PAD = 50256, 50258, 50259


def test_a_copy_from_the_prompt_gets_the_bias_whatever_its_colour():
    """Each row's prompt (left-padded) decides what continues a copy: the token after the row's last token,
    wherever that occurs in the prompt, and after a separator the prompt's first token. Every other token is
    marked exactly as by the plain watermark, and each row keeps its own table as rows are generated."""
    marker = GreenlistWatermark(vocab_size=50260, key=987654321)
    copies = PromptCopies(marker, special_ids={BOS, SEP, PAD})
    prompts = torch.tensor([[BOS, 11, 12, 13, 12, 14, SEP], [PAD, PAD, BOS, 21, 22, 23, SEP]])
    scores = torch.zeros(2, 50260)
    first = copies(prompts, scores)
    plain = marker(prompts, scores)
    expected = plain.clone()
    expected[0, 11] = expected[1, 21] = marker.bias  # after a separator: the prompt's first token
    assert torch.equal(first, expected)
    assert not marker.green_mask(SEP)[[11, 21]].all()  # with this key, a copy the plain mark would bias against

    generated = torch.cat([prompts, torch.tensor([[11], [21]])], dim=1)
    generated = torch.cat([generated, torch.tensor([[12], [22]])], dim=1)  # 12 is followed by 13 and 14
    marked, plain = copies(generated, scores), marker(generated, scores)
    differs = (marked != plain).nonzero().tolist()
    assert {tuple(i) for i in differs} <= {(0, 13), (0, 14), (1, 23)}
    assert (marked[0, [13, 14]] == marker.bias).all() and marked[1, 23] == marker.bias
    assert marked[1, 13] == plain[1, 13]  # row 0's copies are not row 1's


def test_without_a_copy_in_reach_the_mark_is_the_plain_one():
    marker = GreenlistWatermark(vocab_size=50260, key=5)
    copies = PromptCopies(marker, special_ids={BOS, SEP, PAD})
    ids = torch.tensor([[BOS, 7, 8, 9]])  # a headline prefix: 9 occurs once, at the end, followed by nothing
    scores = torch.randn(1, 50260)
    assert torch.equal(copies(ids, scores), marker(ids, scores))


def test_the_key_id_does_not_reveal_the_key():
    ring = Keyring(current=key_id(42), keys={key_id(42): 42})
    assert "42" not in ring.current and len(ring.current) == 12
    assert json.loads(watermark.write_keyring(ring))["keys"][ring.current] == 42


def test_the_cli_makes_and_rotates_keyrings(tmp_path, capsys):
    from training.cli import main

    main(["watermark-keys"])
    first = Keyring.model_validate_json(capsys.readouterr().out)
    path = tmp_path / "keys.json"
    path.write_text(first.model_dump_json())
    main(["watermark-keys", "--rotate", str(path)])
    rotated = Keyring.model_validate_json(capsys.readouterr().out)
    assert rotated.current != first.current and first.keys.items() <= rotated.keys.items()


def _ring(key: int = 1234) -> watermark.Keyring:
    return watermark.Keyring(current=watermark.key_id(key), keys={watermark.key_id(key): key})


def _text(mark: watermark.GreenlistWatermark, length: int, green_at, seed: int = 0) -> list[int]:
    """Token ids where the token at position i is green after its predecessor when green_at(i), else red."""
    import random

    rng = random.Random(seed)
    ids = [rng.randrange(1000)]
    for i in range(1, length):
        greens = set(mark.draw(ids[-1]).tolist())
        pool = [t for t in range(2000, 4000) if (t in greens) == green_at(i)]
        ids.append(rng.choice(pool))
    return ids


def test_only_the_tokens_where_the_model_had_a_choice_are_scored():
    """A template-like text: its marked tokens are the few free choices, the rest came out as certain tokens of
    any colour. Scored whole it is diluted below the threshold; scored where the model had a choice, it is
    found. Which tokens are scored does not depend on the key."""
    vocab = 50260
    mark = watermark.GreenlistWatermark(vocab, 1234)
    free = {i for i in range(1, 200) if i % 10 == 0}  # 19 choices, all green; the others a fifth green
    ids = _text(mark, 200, lambda i: i in free or i % 5 == 1)
    detector = watermark.Detector(_ring(), vocab)
    whole = detector.detect(ids)
    chosen = detector.detect(ids, [i in free for i in range(200)])
    assert whole.verdict == "not_watermarked" and chosen.verdict == "watermarked"
    assert chosen.tokens_scored == len(free) and chosen.key_id == watermark.key_id(1234)
    other_key = watermark.Detector(_ring(999), vocab).detect(ids, [i in free for i in range(200)])
    assert other_key.verdict == "not_watermarked"


def test_a_long_text_with_too_few_choices_is_too_predictable_not_unmarked():
    vocab = 50260
    mark = watermark.GreenlistWatermark(vocab, 1234)
    ids = _text(mark, 120, lambda i: i % 4 == 1)
    few = [i % 20 == 0 for i in range(120)]
    detector = watermark.Detector(_ring(), vocab)
    assert detector.detect(ids, few).verdict == "too_predictable"
    assert detector.detect(ids[:10], [True] * 10).verdict == "too_short"


def test_the_context_is_never_scored():
    vocab = 50260
    mark = watermark.GreenlistWatermark(vocab, 1234)
    ids = _text(mark, 48, lambda i: i < 40)  # a green context, then a short red text
    detector = watermark.Detector(_ring(), vocab)
    assert detector.detect(ids).verdict == "watermarked"
    assert detector.detect(ids, text_start=40).verdict == "too_short"
    assert detector.detect(_text(mark, 80, lambda i: i < 40 or i % 4 == 1), text_start=40).score < 3


def test_choices_are_where_the_next_token_entropy_reaches_the_threshold():
    import torch

    certain, spread = torch.full((8,), -30.0), torch.zeros(8)
    certain[0] = 10.0
    logits = torch.stack([certain, spread, certain, spread])  # position i predicts token i + 1
    assert watermark.choices(logits) == [False, False, True, False]
