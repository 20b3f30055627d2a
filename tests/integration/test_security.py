"""Security properties that are not covered elsewhere: prompts stay out of logs by default, artifacts and
logs carry no credentials, and everything the functions write at run time is under /tmp."""

import json
import re
from pathlib import Path

import pytest

from infra.local.harness import LambdaContext, api_event

ROOT = Path(__file__).resolve().parents[2]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


@pytest.mark.parametrize("log_prompts", [False, True])
def test_prompts_are_logged_only_when_asked(api, monkeypatch, caplog, log_prompts):
    import logging

    monkeypatch.setattr(api.settings, "log_prompts", log_prompts)
    caplog.set_level(logging.INFO)
    marker = "Zanzibar lighthouse keepers"
    event = api_event("POST", "/v1/headlines", {"prompt": marker, "parameters": {"max_new_tokens": 3}})
    assert api.lambda_handler(event, LambdaContext())["statusCode"] == 200
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


def _break(kind: str, s3, bucket: str, headline_model, monkeypatch) -> None:
    """Leave the headline model unloadable in one of the ways whose full message names internals."""
    import shutil
    from collections import namedtuple

    from training.publish import publish_model

    if kind == "not published":  # the message names s3://bucket/models/headline/LATEST
        return
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    if kind == "file missing":  # … s3://bucket/models/headline/v1/
        s3.delete_object(Bucket=bucket, Key="models/headline/v1/tokenizer.json")
    elif kind == "tmp too small":  # … the cache directory under /tmp
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    elif kind == "s3 error":  # a botocore exception's own text, with the bucket in it
        from botocore.exceptions import ClientError

        def denied(**kwargs):
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": f"no access to s3://{bucket}/models"}}, "GetObject"
            )

        monkeypatch.setattr(s3, "get_object", denied)


@pytest.fixture
def tmp_cache():
    """A model cache whose path says /tmp on any machine (pytest's tmp_path follows TMPDIR)."""
    import shutil
    import uuid

    path = Path("/tmp") / f"newsgen-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("kind", ["not published", "file missing", "tmp too small", "s3 error"])
def test_error_bodies_name_no_bucket_key_or_path_and_the_log_has_them(
    s3, bucket, headline_model, tmp_cache, monkeypatch, caplog, kind
):
    """A 503 tells the caller what failed, to retry, and the request id; the full message (bucket, key, local
    path, the exception's text) goes to the log under that request id."""
    import logging

    from handlers import api
    from newsgen.service import NewsService
    from newsgen.settings import Settings
    from newsgen.store import ModelStore

    _break(kind, s3, bucket, headline_model, monkeypatch)
    store = ModelStore(s3=s3, bucket=bucket, prefix="models", cache_dir=tmp_cache)
    monkeypatch.setattr(
        api, "service", NewsService(Settings(model_bucket=bucket, model_cache_dir=tmp_cache), store=store)
    )
    caplog.set_level(logging.INFO)
    event = api_event("POST", "/v1/headlines", {"n": 1})
    response = api.lambda_handler(event, LambdaContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == 503, body
    assert body["error_type"] == "model_unavailable" and body["details"]["task"] == "headline"
    assert "headline" in body["error"] and "retry" in body["error"].lower()
    request_id = event["requestContext"]["requestId"]
    assert body["request_id"] == request_id and request_id in body["error"]
    for secret in (bucket, "s3://", "/tmp", "models/headline", "Traceback"):
        assert secret not in response["body"], (secret, body)
    logged = [str(r.__dict__) for r in caplog.records if r.name.startswith("newsgen")]
    assert any(request_id in r and (bucket in r or "/tmp" in r) for r in logged), logged


def test_internal_errors_name_the_request_id_and_nothing_else(api, monkeypatch, caplog):
    import logging

    def crash(request, deadline):
        raise OSError("[Errno 28] No space left on device: '/tmp/newsgen/models/headline/v1/model.safetensors'")

    monkeypatch.setattr(api.service, "headlines", crash)
    caplog.set_level(logging.INFO)
    event = api_event("POST", "/v1/headlines", {"n": 1})
    response = api.lambda_handler(event, LambdaContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == 500 and body["error_type"] == "internal_error"
    request_id = event["requestContext"]["requestId"]
    assert body["request_id"] == request_id and "/tmp" not in response["body"] and "Errno" not in response["body"]
    assert any(request_id in str(r.__dict__) and "No space left" in str(r.__dict__) for r in caplog.records)


TRACER_CAPTURES = ("capture_method", "capture_lambda_handler")


def untraceable_violations(source: str) -> list[str]:
    """Each use of a tracer's capture decorator that may put a response or an error into a trace: responses hold
    generated text, errors may hold a prompt. Each must be called with capture_response=False and
    capture_error=False (a bare `@tracer.capture_method` captures both)."""
    import ast

    tree = ast.parse(source)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in TRACER_CAPTURES:
            call = calls.get(id(node))
            flags = {k.arg: k.value for k in call.keywords} if call else {}
            for flag in ("capture_response", "capture_error"):
                value = flags.get(flag)
                if not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"line {node.lineno}: {node.attr} without {flag}=False")
    return found


def test_the_tracing_check_finds_what_it_should():
    """Guards against a check that passes anything."""
    assert untraceable_violations("@tracer.capture_method\ndef f(): pass")
    assert untraceable_violations("@tracer.capture_method(capture_response=False)\ndef f(): pass")
    assert untraceable_violations("g = tracer.capture_lambda_handler(f)")
    assert untraceable_violations(
        "@tracer.capture_lambda_handler(capture_response=False, capture_error=True)\ndef f(): pass"
    )
    assert not untraceable_violations(
        "@tracer.capture_method(capture_response=False, capture_error=False)\ndef f(): pass"
    )


HANDLER_MODULES = sorted(p.name for p in (ROOT / "handlers").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", HANDLER_MODULES)
def test_traces_never_capture_responses_or_errors(module):
    assert untraceable_violations((ROOT / "handlers" / module).read_text()) == []


def test_handlers_use_the_tracer_only_through_checked_decorators():
    """A prompt or a text put into a trace by hand would bypass the check above."""
    for module in HANDLER_MODULES:
        text = (ROOT / "handlers" / module).read_text()
        assert "put_metadata" not in text and "put_annotation" not in text and "in_subsegment" not in text, module
