"""Security properties that are not covered elsewhere: prompts stay out of logs by default, artifacts and
logs carry no credentials, and everything the functions write at run time is under /tmp."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from events import FakeContext, api_event

ROOT = Path(__file__).resolve().parents[1]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


@pytest.fixture
def api(published, service_for, monkeypatch):
    from handlers import api as module

    monkeypatch.setattr(module, "service", service_for(published["bucket"]))
    return module


@pytest.mark.parametrize("log_prompts", [False, True])
def test_prompts_are_logged_only_when_asked(api, monkeypatch, caplog, log_prompts):
    import logging

    monkeypatch.setattr(api.settings, "log_prompts", log_prompts)
    caplog.set_level(logging.INFO)
    marker = "Zanzibar lighthouse keepers"
    event = api_event("POST", "/v1/headlines", {"prompt": marker, "parameters": {"max_new_tokens": 3}})
    assert api.lambda_handler(event, FakeContext())["statusCode"] == 200
    records = [str(r.__dict__) for r in caplog.records if r.name.startswith("newsgen")]
    assert any("generated" in r for r in records)  # the request itself is logged (route, n, tokens, seconds)
    assert any(marker in r for r in records) is log_prompts


def test_no_credentials_in_artifacts_or_logs(s3, bucket, headline_model, monkeypatch, capsys):
    from training.publish import publish_model

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        assert SECRET.encode() not in body, obj["Key"]
    assert SECRET not in capsys.readouterr().out


def test_runtime_writes_stay_under_tmp():
    from newsgen.settings import Settings

    assert str(Settings().model_cache_dir).startswith("/tmp/")
    dockerfile = (ROOT / "infra/lambda/Dockerfile").read_text()
    for variable in ("HF_HOME", "MPLCONFIGDIR", "MODEL_CACHE_DIR"):
        assert re.search(rf"{variable}=/tmp/", dockerfile), variable


def test_no_remote_code_and_no_pickle_loading_anywhere():
    sources = [p for p in ROOT.glob("**/*.py") if ".venv" not in p.parts and "tests" not in p.parts]
    for path in sources:
        text = path.read_text()
        assert "trust_remote_code=True" not in text, path
        assert "torch.load(" not in text, path
