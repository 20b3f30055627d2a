"""Shared fixtures: a real S3 over HTTP (moto server on 127.0.0.1), a prepared corpus and tiny trained models.

Expensive things (training) happen once per session; every test gets its own bucket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from infra.local import harness

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT.parent / "shared" / "data" / "all-the-news-sample.csv"

# Set before anything imports boto3 clients or the handlers.
for name, value in {**harness.CREDENTIALS, **harness.LOCAL_SETTINGS}.items():
    os.environ.setdefault(name, value)
# One watermark keyring for the session, made on first use as `make run` makes its own.
os.environ.setdefault(
    "WATERMARK_KEYS_FILE", os.path.join(tempfile.mkdtemp(prefix="newsgen-test-"), "watermark-keys.json")
)


def training_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m training ARGS` from the repository root, its output captured."""
    command = [sys.executable, "-m", "training", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def s3_endpoint():
    from infra.local.harness import start_s3

    previous = os.environ.get("AWS_ENDPOINT_URL")
    server, endpoint = start_s3()
    from newsgen import s3

    s3.client.cache_clear()
    yield endpoint
    server.stop()
    s3.client.cache_clear()
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous


@pytest.fixture
def s3(s3_endpoint):
    from newsgen import s3 as s3_module

    return s3_module.client()


@pytest.fixture
def bucket(s3) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    if not SAMPLE_CSV.is_file():
        pytest.skip(f"{SAMPLE_CSV} is absent (../shared/data is not beside this checkout)")
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The project's own synthetic corpus, prepared."""
    from training.demo_corpus import write_demo_csv
    from training.prepare import prepare

    root = tmp_path_factory.mktemp("demo")
    csv = write_demo_csv(root / "demo.csv", rows=300)
    prepare([csv], root / "data", progress=False)
    return root / "data"


def train_tiny(data: Path, output: Path, task: str, steps: int = 30, **overrides) -> Path:
    from training.train import TrainOptions, train

    options = TrainOptions(
        task=task,
        data=data,
        output=output,
        max_steps=steps,
        eval_steps=10,
        save_steps=10,
        logging_steps=5,
        batch_size=8,
        max_length=96 if task == "article" else 48,
        progress=False,
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    train(options)
    return output


@pytest.fixture(scope="session")
def headline_model(demo_data, tmp_path_factory) -> Path:
    return train_tiny(demo_data, tmp_path_factory.mktemp("headline") / "model", "headline")


@pytest.fixture(scope="session")
def article_model(demo_data, tmp_path_factory) -> Path:
    return train_tiny(demo_data, tmp_path_factory.mktemp("article") / "model", "article", steps=20)


@pytest.fixture
def published(s3, bucket, headline_model, article_model) -> dict:
    """Both tiny models published to a fresh bucket; returns {bucket, prefix, versions}."""
    from training.publish import publish_model

    versions = {}
    for task, path in (("headline", headline_model), ("article", article_model)):
        versions[task] = publish_model(
            path, bucket=bucket, prefix="models", task=task, version="v1", progress=False
        ).version
    return {"bucket": bucket, "prefix": "models", "versions": versions}


@pytest.fixture
def service_for(tmp_path):
    """A NewsService bound to a bucket, with its own model cache."""
    from newsgen.service import NewsService
    from newsgen.settings import Settings

    def make(bucket: str, **settings) -> NewsService:
        return NewsService(
            Settings(model_bucket=bucket, model_prefix="models", model_cache_dir=tmp_path / "cache", **settings)
        )

    return make


@pytest.fixture
def api(published, service_for, monkeypatch):
    """The API handler module, serving the published tiny models."""
    from handlers import api as module

    monkeypatch.setattr(module, "service", service_for(published["bucket"]))
    return module


def call(api, method, path, body=None, **kwargs) -> tuple[int, dict]:
    """One API Gateway proxy event through the handler: (status, JSON body)."""
    import json

    response = api.lambda_handler(harness.api_event(method, path, body, **kwargs), harness.LambdaContext())
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def server(published, service_for, monkeypatch):
    """The plain local server on a free loopback port, serving the published tiny models."""
    from handlers import api
    from infra.local.server import serve

    monkeypatch.setattr(api, "service", service_for(published["bucket"]))
    httpd = serve("127.0.0.1", 0)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def sqs(s3_endpoint):
    import boto3

    return boto3.client("sqs")


@pytest.fixture
def pipeline(published, service_for, batch_pipeline):
    """The batch functions serving the published tiny models."""
    return batch_pipeline(published["bucket"], service_for(published["bucket"]))


@pytest.fixture
def echo_pipeline(bucket, batch_pipeline):
    """The batch functions over a service that echoes each prompt (no model): for the plumbing's edges."""
    return batch_pipeline(bucket, EchoService())


@pytest.fixture
def batch_pipeline(sqs, s3, monkeypatch):
    """Dispatcher, worker and dead-letter recorder wired to a fresh queue pair; helpers run a job to its end."""
    import json

    from handlers import batch as handlers
    from infra.local.triggers import S3Trigger, SqsTrigger, create_queues
    from newsgen import batch

    def make(bucket: str, service):
        name = f"chunks-{uuid.uuid4().hex[:12]}"
        queue_url, dlq_url = create_queues(sqs, name, max_receive_count=2, visibility_timeout=0)
        monkeypatch.setattr(handlers.settings, "batch_queue_url", queue_url)
        monkeypatch.setattr(handlers.settings, "batch_chunk_lines", 100)
        monkeypatch.setattr(handlers.settings, "results_bucket", bucket)
        monkeypatch.setattr(handlers, "service", lambda: service)
        s3_trigger = S3Trigger(s3, bucket, handlers.dispatch_handler)
        worker = SqsTrigger(sqs, queue_url, handlers.worker_handler)
        recorder = SqsTrigger(sqs, dlq_url, handlers.dead_letter_handler, batch_size=10, function="batch-dead-letters")

        class Pipeline:
            def upload(self, name: str, body: bytes) -> None:
                s3.put_object(Bucket=bucket, Key=f"batch/in/{name}", Body=body)
                assert s3_trigger.poll_once() == 1

            def drain(self, max_polls: int = 200) -> None:
                for _ in range(max_polls):
                    if not (worker.poll_once() + recorder.poll_once()):
                        return
                raise AssertionError("the queues did not drain")

            def output(self, name: str) -> dict:
                summary = json.loads(s3.get_object(Bucket=bucket, Key=batch.summary_key(name))["Body"].read())
                try:
                    raw = s3.get_object(Bucket=bucket, Key=batch.results_key(name))["Body"].read()
                except s3.exceptions.NoSuchKey:
                    raw = None
                lines = None if raw is None else [json.loads(line) for line in raw.split(b"\n") if line]
                return {"summary": summary, "lines": lines, "raw": raw}

            def run(self, name: str, body: bytes) -> dict:
                self.upload(name, body)
                self.drain()
                return self.output(name)

        p = Pipeline()
        p.bucket, p.queue_url, p.dlq_url, p.handlers = bucket, queue_url, dlq_url, handlers
        p.s3_trigger, p.worker, p.recorder = s3_trigger, worker, recorder
        return p

    return make


class EchoService:
    """The news service's batch interface without a model: each text is the prompt (or headline) followed
    by `suffix`, so that tests can check what went in against what came out, whatever the characters."""

    def __init__(self, suffix: str = " · echo", finish_reason: str = "length"):
        self.suffix, self.finish_reason, self.calls = suffix, finish_reason, 0

    def _text(self, prompt):
        from newsgen.schemas import GeneratedText

        return GeneratedText(text=(prompt or "") + self.suffix, finish_reason=self.finish_reason, generated_tokens=1)

    def _response(self, task, texts):
        from newsgen.schemas import GenerationResponse, ModelRef, Provenance

        ref = ModelRef(task=task, version="echo")
        provenance = Provenance(
            models=[ref], parameters={}, seed=None, created_at="2026-01-01T00:00:00+00:00", watermark=None
        )
        return GenerationResponse(results=texts, model=[ref], provenance=provenance)

    def headlines_many(self, prompts, n, params, deadline=None):
        self.calls += 1
        return [self._response("headline", [self._text(p) for _ in range(n)]) for p in prompts]

    def articles_many(self, headlines, n, params, deadline=None):
        self.calls += 1
        return [self._response("article", [self._text(h) for _ in range(n)]) for h in headlines]

    def news_many(self, prompts, n, headline_params, article_params, deadline=None):
        from newsgen.schemas import NewsItem, NewsResponse

        self.calls += 1
        out = []
        for p in prompts:
            first = self._response("headline", [self._text(p)])
            items = [NewsItem(headline=self._text(p), article=self._text(p)) for _ in range(n)]
            out.append(NewsResponse(results=items, model=first.model, provenance=first.provenance))
        return out
