"""The API handler, called with real API Gateway proxy events, serving models from a moto S3 server."""

import base64
import json

import pytest
from conftest import call

from infra.local.harness import LambdaContext, api_event
from newsgen.prompt import EOS


def test_headlines(api):
    status, body = call(api, "POST", "/v1/headlines", {"n": 2, "parameters": {"seed": 3, "max_new_tokens": 16}})
    assert status == 200, body
    assert len(body["results"]) == 2
    for result in body["results"]:
        assert result["text"].strip()
        assert result["finish_reason"] in ("eos_token", "length", "stop_sequence", "time")
        assert 1 <= result["generated_tokens"] <= 16
    assert body["model"] == [{"task": "headline", "version": "v1"}]
    assert body["synthetic"] is True
    assert body["provenance"]["seed"] == 3 and body["provenance"]["models"] == body["model"]


def test_headline_prompt_starts_the_headline(api):
    status, body = call(api, "POST", "/v1/headlines", {"prompt": "City council", "parameters": {"seed": 1}})
    assert status == 200
    assert body["results"][0]["text"].startswith("City council")


def test_same_seed_same_text(api):
    request = {"n": 2, "parameters": {"seed": 11, "max_new_tokens": 12}}
    first = call(api, "POST", "/v1/headlines", request)[1]["results"]
    second = call(api, "POST", "/v1/headlines", request)[1]["results"]
    assert first == second


def test_articles_and_news(api):
    status, body = call(
        api,
        "POST",
        "/v1/articles",
        {"headline": "Parents in Westmere sue over night bus routes", "parameters": {"max_new_tokens": 20}},
    )
    assert status == 200, body
    assert body["model"][0]["task"] == "article" and body["results"][0]["text"]
    status, body = call(
        api,
        "POST",
        "/v1/news",
        {"n": 2, "headline_parameters": {"max_new_tokens": 20}, "article_parameters": {"max_new_tokens": 20}},
    )
    assert status == 200, body
    assert len(body["results"]) == 2
    assert all(item["headline"]["text"] and item["article"]["text"] for item in body["results"])
    assert [m["task"] for m in body["model"]] == ["headline", "article"]
    assert body["synthetic"] is True and body["provenance"]["seed"] is not None


def test_models_and_health(api):
    status, body = call(api, "GET", "/v1/models")
    assert status == 200
    assert {m["task"]: m["version"] for m in body["models"]} == {"headline": "v1", "article": "v1"}
    assert all(m["metrics"]["val_perplexity"] > 1 for m in body["models"])
    status, body = call(api, "GET", "/health")
    assert status == 200 and body["status"] == "ok"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ('{"n": 2,', "JSON"),
        ("not json at all", "JSON"),
        ('{"n": "two"}', "n"),
        ('{"n": 0}', "n"),
        ('{"n": 99}', "n"),
        ('{"n": 1.5}', "n"),
        ('{"prompt": 5}', "prompt"),
        ('{"unknown": 1}', "unknown"),
        ('{"parameters": {"temperature": 0}}', "temperature"),
        ('{"parameters": {"top_p": 1.5}}', "top_p"),
        ('{"parameters": {"max_new_tokens": 100000}}', "max_new_tokens"),
        ('{"parameters": {"stop": ["a", "b", "c", "d", "e"]}}', "stop"),
        ('{"parameters": {"bogus": true}}', "bogus"),
        ('{"parameters": {"temperature": NaN}}', "temperature"),
        ('{"prompt": "bell\\u0007"}', "prompt"),
        ("[1, 2]", "body"),
        ("", "body"),
    ],
)
def test_bad_requests_are_400_json(api, raw, fragment):
    status, body = call(api, "POST", "/v1/headlines", raw=raw)
    assert status == 400, body
    assert body["error_type"] == "validation_error"
    assert fragment.lower() in (body["error"] + json.dumps(body.get("details"))).lower()
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize(
    "raw",
    ["[" * 10_000, '{"a":' * 2_500 + "1" + "}" * 2_500, '{"parameters": {"stop": ' + "[" * 5_000 + "]" * 5_000 + "}}"],
)
def test_deeply_nested_body_is_400_not_500(api, raw):
    status, body = call(api, "POST", "/v1/headlines", raw=raw)
    assert status == 400, body
    assert body["error_type"] == "validation_error" and "nested too deeply" in body["error"]


@pytest.mark.parametrize("raw", ["[" * 20_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_deeply_nested_body_is_400_under_any_body_limit(api, monkeypatch, raw):
    monkeypatch.setattr(api.settings, "max_body_bytes", 1024 * 1024)
    status, body = call(api, "POST", "/v1/headlines", raw=raw)
    assert status == 400 and "nested too deeply" in body["error"], body
    encoded = api_event("POST", "/v1/headlines", raw=base64.b64encode(raw.encode()).decode())
    encoded["isBase64Encoded"] = True
    response = api.lambda_handler(encoded, LambdaContext())
    assert response["statusCode"] == 400 and "nested too deeply" in response["body"]


def test_brackets_inside_strings_are_not_nesting(api):
    prompt = 'A "quoted" \\ [' + "{[" * 50  # 101 brackets, every one inside the string
    status, body = call(api, "POST", "/v1/headlines", {"prompt": prompt, "parameters": {"max_new_tokens": 2}})
    assert status == 200, body


def test_requests_the_model_cannot_serve_are_400(api):
    status, body = call(api, "POST", "/v1/headlines", {"n": 2, "parameters": {"do_sample": False}})
    assert status == 400 and body["error_type"] == "invalid_request"
    status, body = call(api, "POST", "/v1/articles", {"headline": "word " * 150, "parameters": {"max_new_tokens": 200}})
    assert status == 400 and "context" in body["error"]


HEADLINE = "Parents in Westmere sue over night bus routes"


@pytest.mark.parametrize(
    "route, request_body, fragment",
    [
        ("/v1/articles", {"headline": HEADLINE, "n": 8}, "the model's default"),  # 8 × 160 (generation_config)
        ("/v1/headlines", {"parameters": {"num_beams": 8, "max_new_tokens": 130}}, "8 beams"),  # 8 beams × 130
        ("/v1/news", {"n": 8}, "budget"),  # 8 × 32 headline tokens + 8 × 160 article tokens
        (
            "/v1/news",
            {
                "n": 2,
                "headline_parameters": {"num_beams": 4, "max_new_tokens": 100},
                "article_parameters": {"num_beams": 4, "max_new_tokens": 100},
            },
            "budget",
        ),  # 4×100 + 2×4×100
        # The article's prompt is the headline: up to 2 + 128 tokens, then 128 more, past the 256-token context.
        (
            "/v1/news",
            {
                "prompt": "City council",
                "headline_parameters": {"max_new_tokens": 128},
                "article_parameters": {"max_new_tokens": 128},
            },
            "context",
        ),
    ],
)
def test_requests_past_the_budget_or_context_are_400_before_generating(api, monkeypatch, route, request_body, fragment):
    """The budget counts what runs: the model's default max_new_tokens when the request sets none, and every
    beam of a beam search."""
    from newsgen import generation

    def must_not_run(*args, **kwargs):
        raise RuntimeError("generation started for a request over the budget")

    monkeypatch.setattr(generation, "generate", must_not_run)
    status, body = call(api, "POST", route, request_body)
    assert status == 400, body
    assert body["error_type"] == "invalid_request" and fragment in body["error"], body


def test_requests_within_the_budget_use_the_defaults(api):
    status, body = call(api, "POST", "/v1/articles", {"headline": HEADLINE, "n": 6})  # 6 × 160 = 960
    assert status == 200, body
    assert len(body["results"]) == 6 and body["provenance"]["parameters"]["article"]["max_new_tokens"] == 160


def test_unknown_route_is_404_json(api):
    status, body = call(api, "GET", "/v1/nothing")
    assert status == 404 and body["error_type"] == "not_found"


def test_no_model_published_is_503_and_retried(bucket, service_for, monkeypatch, headline_model):
    from handlers import api as module
    from training.publish import publish_model

    monkeypatch.setattr(module, "service", service_for(bucket))
    status, body = call(module, "POST", "/v1/headlines", {"n": 1})
    assert status == 503 and body["error_type"] == "model_unavailable"
    assert body["details"] == {"cause": "artifact_not_found", "task": "headline"}
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    status, body = call(module, "POST", "/v1/headlines", {"n": 1})  # the next request tries again
    assert status == 200


def test_wrong_method_is_405_with_allow(api):
    response = api.lambda_handler(api_event("PUT", "/v1/headlines", {}), LambdaContext())
    assert response["statusCode"] == 405
    assert json.loads(response["body"])["error_type"] == "method_not_allowed"
    assert "POST" in json.dumps(response.get("headers") or response.get("multiValueHeaders"))


def test_body_over_the_limit_is_413(api):
    status, body = call(api, "POST", "/v1/headlines", {"prompt": "x" * 20_000})
    assert status == 413 and body["error_type"] == "payload_too_large"


def test_curl_form_content_type_is_read_as_json(api):
    status, body = call(
        api, "POST", "/v1/headlines", raw='{"n": 1}', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, body


@pytest.fixture
def slow_clock(monkeypatch):
    """The monotonic clock advances 20 ms at each reading, as if every token took that long: the tiny model is
    fast enough to end its article inside the smallest time budget on a quiet machine."""
    import itertools
    import time

    start, readings = time.monotonic(), itertools.count()
    monkeypatch.setattr(time, "monotonic", lambda: start + 0.02 * next(readings))


class NeverEnds:
    """A served model whose end token's logit is -inf at every step (everything else passed through)."""

    def __init__(self, model, eos: int):
        self.model, self.eos = model, eos

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        out = self.model(**kwargs)
        out.logits[..., self.eos] = float("-inf")
        return out


@pytest.fixture
def article_never_ends(api, monkeypatch):
    """These tests are about the clock: a tiny article model may end its text before any budget runs out."""
    loaded = api.service.store.get("article")
    monkeypatch.setattr(loaded, "model", NeverEnds(loaded.model, loaded.tokenizer.eos_token_id))


def test_time_budget_stops_generation_and_says_so(api, slow_clock, article_never_ends):
    """A Lambda with almost no time left still answers, with what it had: finish_reason "time"."""
    event = api_event(
        "POST",
        "/v1/articles",
        {
            "headline": "Parents in Westmere sue over night bus routes",
            "parameters": {"max_new_tokens": 200, "do_sample": False, "no_repeat_ngram_size": 0},
        },
    )
    margin_ms = api.service.settings.time_margin_ms
    response = api.lambda_handler(event, LambdaContext(timeout_s=(margin_ms + 1) / 1000))
    body = json.loads(response["body"])
    assert response["statusCode"] == 200, body
    result = body["results"][0]
    assert result["finish_reason"] == "time"
    assert result["generated_tokens"] < 200


def test_deadline_counts_from_api_gateways_request_time():
    """API Gateway gives up 29 s after it received the request, cold start included, whatever the Lambda's
    own remaining time says: the earlier of the two is the deadline."""
    import time

    from handlers import api as module

    def seconds_left(received_ago_s: float | None, lambda_remaining_ms: int) -> float:
        event = api_event("POST", "/v1/headlines", {})
        if received_ago_s is not None:
            event["requestContext"]["requestTimeEpoch"] = int((time.time() - received_ago_s) * 1000)
        return module.deadline(event, LambdaContext(timeout_s=(lambda_remaining_ms) / 1000)) - time.monotonic()

    assert seconds_left(27, 28_000) == pytest.approx(module.GATEWAY_TIMEOUT_S - 27, abs=0.2)  # a slow cold start
    assert seconds_left(0, 5_000) == pytest.approx(5, abs=0.2)  # the Lambda's own deadline comes first
    assert seconds_left(None, 28_000) == pytest.approx(28, abs=0.2)  # no request time: the Lambda's alone


def test_request_received_long_ago_stops_generation_early(api, slow_clock, article_never_ends):
    """The Lambda has its full 28 s, but API Gateway received the request 28.5 s ago (a cold start's init
    took that long): generation must stop at once, not run its full length."""
    import time

    event = api_event(
        "POST",
        "/v1/articles",
        {
            "headline": "Parents in Westmere sue over night bus routes",
            "parameters": {"max_new_tokens": 200, "do_sample": False, "no_repeat_ngram_size": 0},
        },
    )
    event["requestContext"]["requestTimeEpoch"] = int((time.time() - 28.5) * 1000)
    response = api.lambda_handler(event, LambdaContext(timeout_s=(28_000) / 1000))
    body = json.loads(response["body"])
    assert response["statusCode"] == 200, body
    assert body["results"][0]["finish_reason"] == "time"
    assert body["results"][0]["generated_tokens"] < 200


def test_stop_sequences_cut_the_text(api):
    status, body = call(
        api,
        "POST",
        "/v1/articles",
        {
            "headline": "City council approves a new ferry line",
            "parameters": {"stop": ["."], "max_new_tokens": 60, "seed": 2},
        },
    )
    assert status == 200
    result = body["results"][0]
    if result["finish_reason"] == "stop_sequence":
        assert "." not in result["text"]
    else:  # the text ended before any "." — then it must not contain one either
        assert result["finish_reason"] in ("eos_token", "length") and "." not in result["text"]


def test_details_return_tokens_with_logprobs(api):
    status, body = call(api, "POST", "/v1/headlines", {"parameters": {"details": True, "max_new_tokens": 5, "seed": 1}})
    assert status == 200
    result = body["results"][0]
    assert len(result["tokens"]) == result["generated_tokens"]
    assert all(t["logprob"] is None or t["logprob"] <= 0 for t in result["tokens"])


def test_openapi_file_is_in_sync_with_the_routes():
    from pathlib import Path

    from handlers import api as module

    committed = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
    assert committed == json.loads(module.app.get_openapi_json_schema()), (
        "run `make openapi` and commit docs/openapi.json"
    )


# --- the playground page (handlers/playground/), served by the same function -----------------------------
def page_response(method: str, path: str, gateway_path: str | None = None) -> dict:
    """`gateway_path`: the path as the client asked for it (API Gateway's requestContext.path: stage included)."""
    from handlers import api as module

    event = api_event(method, path, headers={"Accept": "text/html"})
    if gateway_path is not None:
        event["requestContext"]["path"] = gateway_path
    return module.lambda_handler(event, LambdaContext())


def header(response: dict, name: str) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    headers.update({k.lower(): ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()})
    return headers.get(name.lower(), "")


@pytest.mark.parametrize(
    "path, content_type",
    [("/", "text/html"), ("/playground/app.js", "text/javascript"), ("/playground/style.css", "text/css")],
)
def test_playground_files_are_served_with_their_type_and_a_strict_policy(path, content_type):
    response = page_response("GET", path)
    assert response["statusCode"] == 200, response["body"][:300]
    assert header(response, "Content-Type") == f"{content_type}; charset=utf-8"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    directives = (part.strip().split(" ", 1) for part in header(response, "Content-Security-Policy").split(";"))
    policy = {words[0]: words[1] if len(words) > 1 else "" for words in directives}
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"  # no inline, no CDN
    assert policy["require-trusted-types-for"] == "'script'"  # an innerHTML assignment throws
    assert response["body"].strip()


def test_the_page_has_no_inline_script_or_style_and_names_its_files_relatively():
    import re

    html = page_response("GET", "/")["body"]
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="playground/app.js" defer>']
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert not re.search(r'(src|href)="/', html)  # relative: the page also works under a stage (/prod/)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from elsewhere: works offline


def test_the_page_script_writes_no_html():
    from handlers.api import PLAYGROUND

    script = (PLAYGROUND / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_the_page_redirects_to_the_stage_root_with_a_slash():
    """https://…/prod answers the page too; its relative URLs need …/prod/."""
    response = page_response("GET", "/", gateway_path="/prod")
    assert response["statusCode"] == 308 and header(response, "Location") == "/prod/"
    assert page_response("GET", "/", gateway_path="/prod/")["statusCode"] == 200


def test_the_spec_is_served_by_the_function_and_leaves_the_page_out():
    from handlers import api as module

    response = page_response("GET", "/openapi.json")
    assert response["statusCode"] == 200 and header(response, "Content-Type") == "application/json"
    spec = json.loads(response["body"])
    assert spec == json.loads(module.app.get_openapi_json_schema())
    assert not set(module.PUBLIC_PATHS) & set(spec["paths"])  # the fuzzer and the docs see only the API


@pytest.mark.parametrize("path", ["/", "/playground/app.js", "/openapi.json"])
def test_other_methods_on_the_page_are_405(path):
    response = page_response("POST", path)
    assert response["statusCode"] == 405 and header(response, "Allow") == "GET"
    assert json.loads(response["body"])["error_type"] == "method_not_allowed"


def test_unknown_playground_file_is_404_json():
    response = page_response("GET", "/playground/secrets.txt")
    assert response["statusCode"] == 404 and json.loads(response["body"])["error_type"] == "not_found"


@pytest.mark.parametrize("parameters", [{}, {"do_sample": True, "seed": 2}])
def test_prompts_ending_mid_word_or_in_a_space_are_healed(api, parameters):
    """Issue 16: "Teachers " gave a double space and "Storm" a word glued on after the prompt's last token. The
    prompt's end is spelled again by the model's first tokens (token healing), so the text after a space starts
    with a word and a mid-word prompt ends its word with a token the model chose for it."""
    # In prompt format 2 a first word is backed up with the space the format puts before it.
    for text, spelled in (("Teachers ", " "), ("Storm", " Storm")):
        request = {"prompt": text, "parameters": {"details": True, "max_new_tokens": 8, **parameters}}
        status, body = call(api, "POST", "/v1/headlines", request)
        assert status == 200, body
        result = body["results"][0]
        assert result["text"].startswith(text.strip()) and "  " not in result["text"], result
        # The first tokens spell the prompt's end again (" St" "orm…" or " Storm…"), and the text goes on from them.
        pieces = "".join(t["text"] for t in result["tokens"] if t["text"] != EOS)
        assert pieces.startswith(spelled), result["tokens"]
        assert result["text"] == (text + pieces[len(spelled) :]).strip()
        assert len(result["tokens"]) == result["generated_tokens"]
