"""Fuzz the local API from its own OpenAPI spec with schemathesis: valid and invalid requests alike must
never get a 5xx, every 4xx is JSON {error, error_type, …} (OpenAI's {error: {message, type, …}} on
/v1/completions), and every response matches the spec.

`make test` runs FUZZ_EXAMPLES (default 15) examples per operation; `make fuzz` runs 500 per operation
(hypothesis stops early on the parameterless GETs)."""

import json
import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from handlers import api as api_module

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
schema = schemathesis.openapi.from_dict(json.loads(api_module.app.get_openapi_json_schema()))
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
SEEN: Counter = Counter()


@pytest.fixture(scope="module")
def base_url(s3_endpoint, headline_model, article_model, tmp_path_factory):
    """The local server on a bucket of its own, for the whole module."""
    import uuid

    import boto3

    from infra.local.server import serve
    from newsgen.service import NewsService
    from newsgen.settings import Settings
    from training.publish import publish_model

    bucket = f"fuzz-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    for task, path in (("headline", headline_model), ("article", article_model)):
        publish_model(path, bucket=bucket, prefix="models", task=task, version="v1", progress=False)
    previous = api_module.service
    api_module.service = NewsService(
        Settings(model_bucket=bucket, model_cache_dir=tmp_path_factory.mktemp("fuzz-cache"))
    )
    httpd = serve("127.0.0.1", 0)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    api_module.service = previous
    print(f"\nfuzzed {sum(SEEN.values())} requests: " + ", ".join(f"{k}: {v}" for k, v in sorted(SEEN.items())))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_never_fails_and_always_answers_json(case, base_url):
    response = case.call(base_url=base_url, timeout=60)
    SEEN[response.status_code] += 1
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
    body = response.json()
    if response.status_code >= 400 and case.path in api_module.OPENAI_ROUTES:  # OpenAI's error shape
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict) and error.get("message") and error.get("type"), response.text[:300]
    elif response.status_code >= 400:
        assert isinstance(body, dict) and body.get("error") and body.get("error_type"), response.text[:300]
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
    )
