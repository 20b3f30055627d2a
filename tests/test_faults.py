"""Faults around the model store: S3 throttling, 5xx and timeouts, a full /tmp, unknown formats, unsafe
weights. Each ends in a clear 503 (or a retry that succeeds), never a crash, and never a half-loaded model."""

import io
import json
import socket
import threading

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from newsgen import artifacts
from newsgen.errors import ModelUnavailable
from newsgen.store import ModelStore
from training.publish import publish_model


class _Raw(io.BytesIO):
    def stream(self, amt=1024, decode_content=None):
        while chunk := self.read(amt):
            yield chunk


def s3_error(status: int, code: str):
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
    return AWSResponse("https://s3.local/", status, {"Content-Type": "application/xml"}, _Raw(body))


def inject(s3, operation: str, failures: int, status: int = 503, code: str = "SlowDown") -> list:
    """The next `failures` calls of an S3 operation answer with an error; returns the call log."""
    calls = []

    def handler(request, **kwargs):
        calls.append(request.url)
        if len(calls) <= failures:
            return s3_error(status, code)
        return None

    s3.meta.events.register(f"before-send.s3.{operation}", handler)
    return calls


def store_for(s3, bucket, tmp_path, **kwargs):
    return ModelStore(s3=s3, bucket=bucket, prefix="models", cache_dir=tmp_path / "cache", **kwargs)


@pytest.fixture
def fresh_s3(s3_endpoint):
    """A client of its own, so injected faults do not leak into other tests."""
    import boto3

    return boto3.client("s3", config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=2, read_timeout=2))


@pytest.fixture
def published_v1(fresh_s3, bucket, headline_model):
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    return bucket


def test_throttling_is_retried_with_backoff(fresh_s3, published_v1, tmp_path):
    calls = inject(fresh_s3, "GetObject", failures=2)
    loaded = store_for(fresh_s3, published_v1, tmp_path).get("headline")
    assert loaded.version == "v1"
    assert len(calls) > 2  # two throttled attempts, then success


def test_persistent_5xx_is_a_clear_503(fresh_s3, published_v1, tmp_path):
    inject(fresh_s3, "GetObject", failures=10_000, status=500, code="InternalError")
    with pytest.raises(ModelUnavailable, match="headline model LATEST cannot be loaded") as info:
        store_for(fresh_s3, published_v1, tmp_path).get("headline")
    assert info.value.status_code == 503
    assert not any((tmp_path / "cache").rglob("*.safetensors"))


def test_s3_that_never_answers_times_out_into_503(bucket, tmp_path):
    import boto3

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])  # hold the connection, say nothing
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=1, read_timeout=1),
        )
        with pytest.raises(ModelUnavailable, match="cannot be loaded"):
            store_for(client, bucket, tmp_path).get("headline")
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()


def test_tmp_too_small_is_refused_before_downloading(fresh_s3, published_v1, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(ModelUnavailable, match="not enough space .* raise the function's ephemeral storage"):
        store_for(fresh_s3, published_v1, tmp_path).get("headline")
    assert not any((tmp_path / "cache").rglob("*.safetensors"))


def test_unknown_manifest_format_is_refused(fresh_s3, published_v1, tmp_path):
    key = "models/headline/v1/manifest.json"
    manifest = json.loads(fresh_s3.get_object(Bucket=published_v1, Key=key)["Body"].read())
    manifest["format_version"] = 99
    fresh_s3.put_object(Bucket=published_v1, Key=key, Body=json.dumps(manifest).encode())
    with pytest.raises(ModelUnavailable, match="format_version 99 is not supported") as info:
        store_for(fresh_s3, published_v1, tmp_path).get("headline")
    assert info.value.details["cause"] == "unsupported_artifact"


def test_pickle_weights_offered_in_s3_are_never_loaded(fresh_s3, published_v1, tmp_path):
    """A tampered manifest that lists pytorch_model.bin instead of safetensors."""
    key = "models/headline/v1/manifest.json"
    manifest = json.loads(fresh_s3.get_object(Bucket=published_v1, Key=key)["Body"].read())
    for entry in manifest["files"]:
        if entry["path"] == "model.safetensors":
            entry["path"] = "pytorch_model.bin"
    fresh_s3.put_object(Bucket=published_v1, Key=key, Body=json.dumps(manifest).encode())
    with pytest.raises(ModelUnavailable, match="pickle") as info:
        store_for(fresh_s3, published_v1, tmp_path).get("headline")
    assert info.value.details["cause"] == "unsafe_artifact"


def test_remote_code_config_is_refused(fresh_s3, bucket, headline_model, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(headline_model, tampered, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((tampered / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.Model"}
    (tampered / "config.json").write_text(json.dumps(config))
    publish_model(tampered, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    with pytest.raises(ModelUnavailable, match="without custom code"):
        store_for(fresh_s3, bucket, tmp_path).get("headline")


def test_api_answers_503_json_on_s3_outage_then_recovers(fresh_s3, published_v1, tmp_path, monkeypatch):
    from events import FakeContext, api_event
    from handlers import api
    from newsgen.service import NewsService
    from newsgen.settings import Settings

    calls = inject(fresh_s3, "GetObject", failures=8, status=503)
    service = NewsService(Settings(model_bucket=published_v1, model_cache_dir=tmp_path / "cache"),
                          store=store_for(fresh_s3, published_v1, tmp_path))
    monkeypatch.setattr(api, "service", service)
    event = api_event("POST", "/v1/headlines", {"n": 1, "parameters": {"max_new_tokens": 4}})
    first = api.lambda_handler(event, FakeContext())
    assert first["statusCode"] == 503
    body = json.loads(first["body"])
    assert body["error_type"] == "model_unavailable" and "Traceback" not in first["body"]
    second = api.lambda_handler(event, FakeContext())  # S3 is back: the next request loads the model
    assert second["statusCode"] == 200, second["body"]
    assert len(calls) > 8
