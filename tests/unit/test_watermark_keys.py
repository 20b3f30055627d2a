"""Where a deployed stack's watermark key comes from: the seed its Secrets Manager secret generates (template.yaml
WatermarkKeys), a keyring stored in that secret instead, or the deployer's SSM parameter."""

import json
import string
from pathlib import Path

import pytest
import torch
from cfnlint.decode import decode

from newsgen.watermark import (
    GreenlistWatermark,
    WatermarkUnavailable,
    key_id,
    keyring_with_new_key,
    load_keyring,
    parse_keyring,
    write_keyring,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def generated_secret(seed: str | None = None) -> str:
    """What CloudFormation stores for the template's GenerateSecretString: its SecretStringTemplate with the
    GenerateStringKey set to a random password of PasswordLength alphanumerics (ExcludePunctuation)."""
    import secrets

    template, problems = decode(str(TEMPLATE))
    assert not problems, problems
    generate = template["Resources"]["WatermarkKeys"]["Properties"]["GenerateSecretString"]
    assert generate["ExcludePunctuation"] is True
    alphabet = string.ascii_letters + string.digits
    value = json.loads(generate["SecretStringTemplate"])
    value[generate["GenerateStringKey"]] = seed or "".join(
        secrets.choice(alphabet) for _ in range(generate["PasswordLength"])
    )
    return json.dumps(value)


def test_the_generated_secret_is_a_keyring_of_one_key_the_same_in_every_container():
    text = generated_secret()
    ring = parse_keyring(text, "secret")
    assert ring == parse_keyring(text, "secret")  # every container derives the same key
    assert list(ring.keys) == [ring.current] and ring.current == key_id(ring.current_key())
    assert 0 <= ring.current_key() < 2**62
    assert parse_keyring(generated_secret(), "secret").current != ring.current


def test_a_key_derived_from_the_secret_marks_and_rotates_like_any_other():
    ring = parse_keyring(generated_secret(), "secret")
    marked = GreenlistWatermark(vocab_size=50260, key=ring.current_key())
    ids, scores = torch.tensor([[5, 7]]), torch.zeros(1, 50260)
    assert torch.equal(marked(ids, scores), marked.library(ids, scores))
    assert int((marked(ids, scores) > 0).sum()) == 50260 // 4  # a quarter of the vocabulary is green
    # Rotation (`python -m training watermark-keys --rotate` on the secret's value) keeps the derived key.
    rotated = parse_keyring(write_keyring(keyring_with_new_key(ring)), "file")
    assert rotated.keys[ring.current] == ring.current_key() and rotated.current != ring.current


@pytest.mark.parametrize(
    "text",
    [
        '{"scheme": "newsgen-watermark-seed-1", "seed": "short"}',
        '{"scheme": "other", "seed": "' + "a" * 64 + '"}',
        '{"seed": "' + "a" * 64 + '"}',
    ],
)
def test_a_seed_that_is_not_the_generated_kind_is_refused(text):
    with pytest.raises(WatermarkUnavailable, match="not valid"):
        parse_keyring(text, "secret")


@pytest.fixture
def secrets_manager(s3_endpoint):
    """Secrets Manager of the tests' moto server."""
    import boto3

    return boto3.client("secretsmanager")


def test_the_keyring_is_read_from_secrets_manager_by_arn_or_name(secrets_manager):
    seed = secrets_manager.get_random_password(PasswordLength=64, ExcludePunctuation=True)["RandomPassword"]
    created = secrets_manager.create_secret(Name="newsgen/test/generated", SecretString=generated_secret(seed))
    expected = parse_keyring(generated_secret(seed), "secret")
    assert load_keyring(secret=created["ARN"]) == expected == load_keyring(secret="newsgen/test/generated")
    # A keyring put in the secret instead (after a rotation) is read as it is.
    ring = keyring_with_new_key(expected)
    secrets_manager.put_secret_value(SecretId=created["ARN"], SecretString=write_keyring(ring))
    assert load_keyring(secret=created["ARN"]) == ring


def test_the_secret_comes_before_the_parameter_and_an_unreadable_one_names_nothing(secrets_manager):
    created = secrets_manager.create_secret(Name="newsgen/test/first", SecretString=generated_secret())
    assert load_keyring("/newsgen/test/absent", secret=created["ARN"]).current
    with pytest.raises(WatermarkUnavailable, match="secret cannot be read") as missing:
        load_keyring(secret="newsgen/test/absent")
    assert "absent" not in missing.value.message  # no resource names in what may reach a client


def test_the_service_reads_the_secret_its_settings_name(secrets_manager, service_for, monkeypatch):
    created = secrets_manager.create_secret(Name="newsgen/test/service", SecretString=generated_secret())
    monkeypatch.setenv("WATERMARK_KEYS_SECRET", created["ARN"])
    from newsgen.settings import Settings

    service = service_for("unused", watermark_keys_secret=Settings().watermark_keys_secret)
    assert service.keyring() == load_keyring(secret=created["ARN"])


def test_the_cli_checks_texts_with_a_deployed_stacks_secret(secrets_manager, capsys):
    from training.cli import main

    created = secrets_manager.create_secret(Name="newsgen/test/cli", SecretString=generated_secret())
    capsys.readouterr()
    main(["detect", "--text", "Nothing to see here at all today.", "--keys-secret", created["ARN"]])
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "too_short"
