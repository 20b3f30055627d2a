"""Preloading models in the Lambda init phase, and torch's thread count under Lambda's CPU share (handlers.runtime)."""

import threading
import time

import pytest

from handlers import runtime
from newsgen.errors import ModelUnavailable
from newsgen.schemas import PromptRequest
from newsgen.store import ModelStore


@pytest.fixture
def slow_loads(monkeypatch):
    """Every model load takes 0.6 s longer; counts the loads."""
    loads = []
    original = ModelStore._fetch_and_load

    def slow(self, task, version):
        loads.append((task, threading.current_thread().name))
        time.sleep(0.6)
        return original(self, task, version)

    monkeypatch.setattr(ModelStore, "_fetch_and_load", slow)
    return loads


def test_on_demand_init_returns_within_its_wait_and_the_first_request_waits_for_the_models(
    published, service_for, slow_loads, monkeypatch
):
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    monkeypatch.setattr(runtime, "process_age_seconds", lambda: 8.8)  # imports took 8.8 s of the 9 s
    service = service_for(published["bucket"])
    started = time.perf_counter()
    assert runtime.preload_at_init(service, 9.0) is False  # still loading when init hands over
    assert time.perf_counter() - started < 0.5
    response = service.headlines(PromptRequest(n=1, parameters={"max_new_tokens": 4, "do_sample": False}))
    assert response.results[0].generated_tokens >= 1
    deadline = time.monotonic() + 10
    while len(service.loaded_models()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {m.task for m in service.loaded_models()} == {"headline", "article"}
    # Loaded once each, by the background thread: the request waited instead of loading a second copy.
    assert sorted(slow_loads) == [("article", "newsgen-preload"), ("headline", "newsgen-preload")]


def test_provisioned_concurrency_init_loads_everything_first(published, service_for, slow_loads, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")
    monkeypatch.setattr(runtime, "process_age_seconds", lambda: 8.9)
    service = service_for(published["bucket"])
    assert runtime.preload_at_init(service, 9.0) is True
    assert {m.task for m in service.loaded_models()} == {"headline", "article"}
    assert [thread for _, thread in slow_loads] == ["MainThread", "MainThread"]


def test_a_failed_preload_is_logged_and_requests_answer_unavailable(s3, bucket, service_for, caplog, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    monkeypatch.setattr(runtime, "process_age_seconds", lambda: 0.0)
    service = service_for(bucket)  # nothing published in this bucket
    assert runtime.preload_at_init(service, 9.0) is True
    assert "preload failed" in caplog.text and "model_unavailable" in {
        getattr(r, "error_type", "") for r in caplog.records
    }
    with pytest.raises(ModelUnavailable):
        service.headlines(PromptRequest())


def test_process_age_is_measured_from_the_process_start():
    import subprocess
    import sys

    age = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(1.2); from handlers.runtime import process_age_seconds; "
            "print(process_age_seconds())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 1.2 <= float(age) < 30
    assert 0 <= runtime.process_age_seconds() < 24 * 3600


@pytest.mark.parametrize(
    "memory_mb, cpus, threads",
    [
        ("1024", 2, 1),
        ("1536", 2, 1),
        ("2048", 2, 1),
        ("3008", 2, 2),
        ("3538", 2, 2),
        ("10240", 6, 6),
        ("10240", 2, 2),
        (None, 2, 2),
        (None, 16, 16),
    ],
)
def test_default_threads_follow_the_lambda_cpu_share(monkeypatch, memory_mb, cpus, threads):
    if memory_mb is None:
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert runtime.default_threads() == threads


def test_a_request_during_a_background_preload_shares_its_store(
    published, service_for, slow_loads, monkeypatch, caplog
):
    """The store is created once even when the init's preload thread and the first request ask for it together
    (found by `make sam-local`: two stores downloaded one version into one cache)."""
    from newsgen import s3

    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    monkeypatch.setattr(runtime, "process_age_seconds", lambda: 60.0)  # the budget is spent: hand over at once
    created = []
    real_client = s3.client

    def slow_client():  # a cold container's first boto3 client takes a while
        created.append(threading.current_thread().name)
        time.sleep(0.5)
        return real_client()

    monkeypatch.setattr(s3, "client", slow_client)
    service = service_for(published["bucket"])
    assert runtime.preload_at_init(service, 9.0) is False
    response = service.headlines(PromptRequest(n=1, parameters={"max_new_tokens": 4, "do_sample": False}))
    assert response.results[0].generated_tokens >= 1
    deadline = time.monotonic() + 10
    while len(service.loaded_models()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert created == ["newsgen-preload"]
    assert sorted(task for task, _ in slow_loads) == ["article", "headline"]
    assert "preload failed" not in caplog.text


def test_one_broken_model_does_not_keep_the_other_from_preloading(
    s3, bucket, article_model, service_for, caplog, monkeypatch
):
    from training.publish import publish_model

    monkeypatch.setattr(runtime, "process_age_seconds", lambda: 0.0)
    publish_model(article_model, bucket=bucket, prefix="models", task="article", version="v1", progress=False)
    service = service_for(bucket)  # no headline model published
    assert runtime.preload_at_init(service, 9.0) is True
    assert [m.task for m in service.loaded_models()] == ["article"]
    assert "no headline model is published" in caplog.text
