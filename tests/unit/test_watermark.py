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
