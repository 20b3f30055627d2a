"""Faults around the model store: S3 throttling, 5xx and timeouts, a full /tmp, unknown formats, unsafe
weights. Each ends in a clear 503 (or a retry that succeeds), never a crash, and never a half-loaded model."""

import io
import json
import socket
import threading

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

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

    return boto3.client(
        "s3", config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=2, read_timeout=2)
    )


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
            "s3",
            endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
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
    from handlers import api
    from infra.local.harness import LambdaContext, api_event
    from newsgen.service import NewsService
    from newsgen.settings import Settings

    calls = inject(fresh_s3, "GetObject", failures=8, status=503)
    service = NewsService(
        Settings(model_bucket=published_v1, model_cache_dir=tmp_path / "cache"),
        store=store_for(fresh_s3, published_v1, tmp_path),
    )
    monkeypatch.setattr(api, "service", service)
    event = api_event("POST", "/v1/headlines", {"n": 1, "parameters": {"max_new_tokens": 4}})
    first = api.lambda_handler(event, LambdaContext())
    assert first["statusCode"] == 503
    body = json.loads(first["body"])
    assert body["error_type"] == "model_unavailable" and "Traceback" not in first["body"]
    second = api.lambda_handler(event, LambdaContext())  # S3 is back: the next request loads the model
    assert second["statusCode"] == 200, second["body"]
    assert len(calls) > 8


class Clock:
    """The store's monotonic clock, moved by hand."""

    def __init__(self):
        import time

        self.now, self.perf_counter = 1000.0, time.perf_counter

    def monotonic(self) -> float:
        return self.now


def count_gets(s3) -> list:
    keys = []
    s3.meta.events.register(
        "before-send.s3.GetObject", lambda request, **kwargs: keys.append(request.url.split("/models/", 1)[-1])
    )
    return keys


@pytest.mark.parametrize("breakage", ["corrupt file", "missing file", "unsupported manifest"])
def test_a_broken_pinned_version_is_not_fetched_again_within_the_ttl(
    fresh_s3, published_v1, tmp_path, monkeypatch, breakage
):
    from newsgen import store as store_module

    key = {
        "corrupt file": "models/headline/v1/model.safetensors",
        "missing file": "models/headline/v1/tokenizer.json",
        "unsupported manifest": "models/headline/v1/manifest.json",
    }[breakage]
    good = fresh_s3.get_object(Bucket=published_v1, Key=key)["Body"].read()
    if breakage == "missing file":
        fresh_s3.delete_object(Bucket=published_v1, Key=key)
    else:
        broken = good[: len(good) // 2] if breakage == "corrupt file" else b'{"format_version": 99}'
        fresh_s3.put_object(Bucket=published_v1, Key=key, Body=broken)
    clock = Clock()
    monkeypatch.setattr(store_module, "time", clock)
    store = store_for(fresh_s3, published_v1, tmp_path, broken_ttl_seconds=30)
    gets = count_gets(fresh_s3)
    with pytest.raises(ModelUnavailable):
        store.get("headline", "v1")
    fetched = len(gets)
    assert fetched >= 1
    for _ in range(3):  # within the TTL: the same 503 at once, S3 untouched
        clock.now += 9
        with pytest.raises(ModelUnavailable, match="failed before") as info:
            store.get("headline", "v1")
        assert info.value.details["retry_after_s"] == 30 - (clock.now - 1000)
    assert len(gets) == fetched
    fresh_s3.put_object(Bucket=published_v1, Key=key, Body=good)  # repaired
    clock.now += 4  # the TTL is over: tried again, and it loads
    assert store.get("headline", "v1").version == "v1"
    assert len(gets) > fetched


def test_latest_naming_a_broken_version_reads_only_the_pointer_within_the_ttl(
    fresh_s3, published_v1, tmp_path, monkeypatch
):
    """LATEST is still read (one small GET), so that pointing it at a good version helps at once; the broken
    version it names is not downloaded again."""
    from newsgen import store as store_module

    fresh_s3.put_object(Bucket=published_v1, Key="models/headline/v1/model.safetensors", Body=b"truncated")
    monkeypatch.setattr(store_module, "time", Clock())
    store = store_for(fresh_s3, published_v1, tmp_path, broken_ttl_seconds=30)
    with pytest.raises(ModelUnavailable):
        store.get("headline")
    gets = count_gets(fresh_s3)
    for _ in range(3):
        with pytest.raises(ModelUnavailable, match="failed before"):
            store.get("headline")
    assert gets == ["headline/LATEST"] * 3


def test_s3_errors_are_not_remembered_as_a_broken_version(fresh_s3, published_v1, tmp_path):
    """Throttling, 5xx and timeouts are S3's, not the version's: the next request tries again at once."""
    inject(fresh_s3, "GetObject", failures=8, status=503)
    store = store_for(fresh_s3, published_v1, tmp_path, broken_ttl_seconds=30)
    with pytest.raises(ModelUnavailable):
        store.get("headline", "v1")
    assert store.get("headline", "v1").version == "v1"


def test_api_answers_a_broken_version_at_once_with_retry_after(fresh_s3, published_v1, tmp_path, monkeypatch):
    from handlers import api
    from infra.local.harness import LambdaContext, api_event
    from newsgen.service import NewsService
    from newsgen.settings import Settings

    fresh_s3.delete_object(Bucket=published_v1, Key="models/headline/v1/tokenizer.json")
    settings = Settings(
        model_bucket=published_v1,
        model_cache_dir=tmp_path / "cache",
        headline_model_version="v1",
        broken_version_ttl_seconds=30,
    )
    monkeypatch.setattr(
        api, "service", NewsService(settings, store=store_for(fresh_s3, published_v1, tmp_path, broken_ttl_seconds=30))
    )
    event = api_event("POST", "/v1/headlines", {"n": 1, "parameters": {"max_new_tokens": 4}})
    assert api.lambda_handler(event, LambdaContext())["statusCode"] == 503
    gets = count_gets(fresh_s3)
    second = api.lambda_handler(event, LambdaContext())
    body = json.loads(second["body"])
    assert second["statusCode"] == 503 and gets == []
    assert body["details"]["cause"] == "artifact_not_found" and 1 <= body["details"]["retry_after_s"] <= 30
    headers = {
        **(second.get("headers") or {}),
        **{k: v[-1] for k, v in (second.get("multiValueHeaders") or {}).items()},
    }
    assert headers["Retry-After"] == str(body["details"]["retry_after_s"])
    assert f"retry in {body['details']['retry_after_s']} s" in body["error"]
