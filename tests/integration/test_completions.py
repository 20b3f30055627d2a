"""POST /v1/completions (OpenAI's legacy completions API) and GET /v1/models in OpenAI's shape, through the API
handler with API Gateway events, on the tiny published models."""

import datetime as dt
import uuid

import pytest
from conftest import call

HEADLINE = "Parents in Westmere sue over night bus routes"


def complete(api, **request):
    return call(api, "POST", "/v1/completions", request)


def decoding(body, task):
    """The effective decoding parameters of `task`: keyed by task, or flat before that change lands."""
    parameters = body["provenance"]["parameters"]
    return parameters.get(task, parameters)


def test_headline_completion_is_openais_shape_with_our_label(api):
    status, body = complete(api, model="headline", prompt="Storm", max_tokens=8, n=2, seed=1)
    assert status == 200, body
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert isinstance(body["created"], int) and body["model"] == "headline:v1"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert choice["finish_reason"] in ("stop", "length") and choice["logprobs"] is None
    usage = body["usage"]
    assert usage["prompt_tokens"] == 2  # <|endoftext|> and "Storm"
    assert 2 <= usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["synthetic"] is True
    provenance = body["provenance"]
    assert provenance["models"] == [{"task": "headline", "version": "v1"}]
    assert provenance["seed"] == 1 and provenance["watermark"]["scheme"]


@pytest.mark.parametrize("prompt", ["Storm", "Storm ", ""])
def test_completion_is_what_follows_the_prompt_in_our_headline(api, prompt):
    """Same seed and parameters as /v1/headlines: the choice is our headline less the prompt in front."""
    status, ours = call(
        api, "POST", "/v1/headlines", {"prompt": prompt, "parameters": {"seed": 5, "max_new_tokens": 10}}
    )
    assert status == 200, ours
    status, body = complete(api, model="headline", prompt=prompt, max_tokens=10, seed=5)
    assert status == 200, body
    text = body["choices"][0]["text"]
    assert prompt + text == ours["results"][0]["text"]
    finish = {"eos_token": "stop", "stop_sequence": "stop", "length": "length", "time": "length"}
    assert body["choices"][0]["finish_reason"] == finish[ours["results"][0]["finish_reason"]]
    assert body["usage"]["completion_tokens"] == ours["results"][0]["generated_tokens"]


def test_article_completion_writes_under_the_headline(api):
    status, ours = call(
        api, "POST", "/v1/articles", {"headline": HEADLINE, "parameters": {"seed": 2, "max_new_tokens": 12}}
    )
    assert status == 200, ours
    status, body = complete(api, model="article:v1", prompt=HEADLINE, max_tokens=12, seed=2)
    assert status == 200, body
    assert body["model"] == "article:v1" and body["choices"][0]["text"] == ours["results"][0]["text"]
    assert body["provenance"]["models"] == [{"task": "article", "version": "v1"}]
    status, echoed = complete(api, model="article", prompt=HEADLINE, max_tokens=12, seed=2, echo=True)
    assert echoed["choices"][0]["text"] == HEADLINE + "\n" + ours["results"][0]["text"]


def test_prompt_list_indexes_across_prompts_and_n(api):
    status, body = complete(api, model="headline", prompt=["Storm", "Council"], n=2, max_tokens=6, seed=3, echo=True)
    assert status == 200, body
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    prompts = ["Storm", "Storm", "Council", "Council"]
    assert all(c["text"].startswith(p) for c, p in zip(body["choices"], prompts, strict=True)), body["choices"]
    assert body["usage"]["prompt_tokens"] == 4  # two prompts of two tokens, counted once each


def test_temperature_zero_is_greedy(api):
    first = complete(api, model="headline", prompt="Storm", max_tokens=8, temperature=0)
    second = complete(api, model="headline", prompt="Storm", max_tokens=8, temperature=0)
    assert first[0] == 200, first
    assert first[1]["choices"][0]["text"] == second[1]["choices"][0]["text"]
    assert decoding(first[1], "headline")["do_sample"] is False and first[1]["provenance"]["seed"] is None


def test_sampling_fields_reach_the_decoder(api):
    status, body = complete(api, model="headline", max_tokens=5, temperature=1.3, top_p=0.5, seed=4)
    assert status == 200, body
    parameters = decoding(body, "headline")
    assert parameters["do_sample"] is True and parameters["temperature"] == 1.3 and parameters["top_p"] == 0.5
    assert parameters["max_new_tokens"] == 5


def test_logprobs_in_openais_legacy_shape(api):
    status, body = complete(api, model="headline", prompt="Storm", max_tokens=8, seed=7, logprobs=3)
    assert status == 200, body
    choice = body["choices"][0]
    text, logprobs = choice["text"], choice["logprobs"]
    tokens = logprobs["tokens"]
    assert tokens and len(tokens) == len(logprobs["token_logprobs"]) == len(logprobs["text_offset"])
    assert all(lp is None or lp <= 0 for lp in logprobs["token_logprobs"])
    assert logprobs["top_logprobs"] == [{t: lp} for t, lp in zip(tokens, logprobs["token_logprobs"], strict=True)]
    assert logprobs["text_offset"][0] == 0 and logprobs["text_offset"] == sorted(logprobs["text_offset"])
    for token, offset in zip(tokens, logprobs["text_offset"], strict=True):
        assert offset < len(text) and text[offset:].startswith(token[: len(text) - offset])
    assert "<|EOS|>" not in tokens  # the end of the text is not part of it
    # "Storm" is healed: the tokens that re-spell it are the prompt's, not the completion's
    assert "".join(tokens) == text


def test_stop_cuts_the_text(api):
    status, body = complete(api, model="article", prompt=HEADLINE, max_tokens=60, seed=2, stop=[".", "!"])
    assert status == 200, body
    choice = body["choices"][0]
    assert "." not in choice["text"] and "!" not in choice["text"]
    assert choice["finish_reason"] in ("stop", "length")
    assert decoding(body, "article")["max_new_tokens"] == 60


def test_unsupported_fields_are_accepted_at_their_defaults(api):
    status, body = complete(
        api,
        model="headline",
        max_tokens=4,
        n=2,
        best_of=2,
        stream=False,
        presence_penalty=0,
        frequency_penalty=0.0,
        logit_bias={},
        suffix=None,
        echo=False,
        user="someone",
    )
    assert status == 200, body
    assert len(body["choices"]) == 2


def openai_error(body, status, code, param):
    """An error body of OpenAI's shape, with nothing else in it."""
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert (error["code"], error["param"]) == (code, param), body
    return error["message"]


@pytest.mark.parametrize(
    "request_body, status, code, param, fragment",
    [
        ({"model": "sports"}, 404, "model_not_found", "model", "headline, article"),
        ({"model": "headline:v999"}, 404, "model_not_found", "model", "serves headline:v1"),
        ({"model": "headline", "stream": True}, 400, "unsupported_parameter", "stream", "streaming is not supported"),
        ({"model": "headline", "presence_penalty": 0.5}, 400, "unsupported_parameter", "presence_penalty", "not"),
        ({"model": "headline", "frequency_penalty": -1}, 400, "unsupported_parameter", "frequency_penalty", "not"),
        ({"model": "headline", "logit_bias": {"50256": -100}}, 400, "unsupported_parameter", "logit_bias", "not"),
        ({"model": "headline", "suffix": "end"}, 400, "unsupported_parameter", "suffix", "not supported"),
        ({"model": "headline", "best_of": 3}, 400, "unsupported_parameter", "best_of", "best_of = n"),
        ({"model": "headline", "echo": True, "logprobs": 1}, 400, "unsupported_parameter", "echo", "logprobs"),
        ({"model": "article", "prompt": "  "}, 400, "invalid_request", "prompt", "blank"),
        ({"model": "article"}, 400, "invalid_request", "prompt", "blank"),
        ({"model": "headline", "n": 2, "temperature": 0}, 400, "invalid_request", "n", "greedy"),
        ({"model": "headline", "n": 4, "prompt": ["a", "b", "c"]}, 400, "invalid_request", "n", "12 completions"),
        ({"model": "article", "prompt": HEADLINE, "n": 8}, 400, "invalid_request", "max_tokens", "model's default"),
        ({"model": "article", "prompt": "word " * 150, "max_tokens": 200}, 400, "invalid_request", "prompt", "context"),
        ({"prompt": "Storm"}, 400, "validation_error", "model", "model: Field required"),
        ({"model": "headline", "n": 9}, 400, "validation_error", "n", "n:"),
        ({"model": "headline", "max_tokens": 1000}, 400, "validation_error", "max_tokens", "256"),
        ({"model": "headline", "temperature": 3}, 400, "validation_error", "temperature", "2"),
        ({"model": "headline", "temperature": 0.001}, 400, "validation_error", "temperature", "0 (greedy"),
        ({"model": "headline", "logprobs": 6}, 400, "validation_error", "logprobs", "5"),
        ({"model": "headline", "prompt": 5}, 400, "validation_error", "prompt", "a string or a list of strings"),
        ({"model": "headline", "prompt": [[1, 2]]}, 400, "validation_error", "prompt", "[0]: Input should be a"),
        ({"model": "headline", "prompt": "x" * 1001}, 400, "validation_error", "prompt", "at most 1000 characters"),
        ({"model": "headline", "prompt": ["a"] * 9}, 400, "validation_error", "prompt", "at most 8"),
        ({"model": "headline", "prompt": "bell\u0007"}, 400, "validation_error", "prompt", "control characters"),
        ({"model": "headline", "stop": ""}, 400, "validation_error", "stop", "at least 1 character"),
        ({"model": "headline", "stop": ["a"] * 5}, 400, "validation_error", "stop", "at most 4"),
        ({"model": "headline", "foo": 1}, 400, "validation_error", "foo", "foo"),
    ],
)
def test_errors_are_openais_shape(api, monkeypatch, request_body, status, code, param, fragment):
    """Refused before anything is generated, in OpenAI's error shape, naming the field at fault."""
    from newsgen import generation

    def must_not_run(*args, **kwargs):
        raise RuntimeError("generation started for a refused request")

    monkeypatch.setattr(generation, "generate", must_not_run)
    got_status, body = call(api, "POST", "/v1/completions", request_body)
    assert got_status == status, body
    assert fragment in openai_error(body, status, code, param)


@pytest.mark.parametrize(
    "raw, fragment",
    [("not json", "JSON"), ('{"model": "headline",', "JSON"), ("[1]", "body"), ("[" * 100, "nested too deeply")],
)
def test_unreadable_bodies_are_openais_shape(api, raw, fragment):
    status, body = call(api, "POST", "/v1/completions", raw=raw)
    assert status == 400
    assert fragment in openai_error(body, 400, "validation_error", None)


def test_other_failures_on_the_route_are_openais_shape(api, s3, service_for, monkeypatch):
    status, body = call(api, "GET", "/v1/completions")
    assert status == 405 and "use POST" in openai_error(body, 405, "method_not_allowed", None)
    status, body = call(api, "POST", "/v1/completions", {"model": "headline", "prompt": "x" * 20_000})
    assert status == 413 and "over the limit" in openai_error(body, 413, "payload_too_large", None)
    empty = f"empty-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=empty)
    monkeypatch.setattr(api, "service", service_for(empty))
    status, body = call(api, "POST", "/v1/completions", {"model": "headline"})
    assert status == 503 and "retry" in openai_error(body, 503, "model_unavailable", None)
    status, body = call(api, "POST", "/v1/headlines", {"n": 1})  # the other routes keep our shape
    assert status == 503 and body["error_type"] == "model_unavailable"


def test_user_is_accepted_and_never_logged(api, monkeypatch, caplog):
    monkeypatch.setattr(api.settings, "log_prompts", True)
    status, body = complete(api, model="headline", prompt="Harbor ferry", max_tokens=3, user="user-4f2a9c")
    assert status == 200, body
    logged = "\n".join(str(vars(record)) for record in caplog.records)
    assert "Harbor ferry" in logged  # LOG_PROMPTS logs the request ...
    assert "user-4f2a9c" not in logged  # ... without the user


def test_models_serve_our_clients_and_openais(api):
    status, body = call(api, "GET", "/v1/models")
    assert status == 200, body
    assert {m["task"]: m["version"] for m in body["models"]} == {"headline": "v1", "article": "v1"}
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["headline:v1", "article:v1"]
    for model, ours in zip(body["data"], body["models"], strict=True):
        assert model["object"] == "model" and model["owned_by"] == "newsgen"
        assert model["created"] == int(dt.datetime.fromisoformat(ours["created_at"]).timestamp())


def test_logprobs_leave_out_special_tokens_the_text_leaves_out():
    """A model may emit <|SEP|> or <|pad|> inside a text: decoding skips them, so their names are no part of
    the text and must not shift the offsets of the tokens that are."""
    from newsgen.completions import _logprobs
    from newsgen.schemas import GeneratedText, TokenDetail

    pieces = ["St", "orm", "al", " in", " L", "<|SEP|>", " new", "field"]
    result = GeneratedText(
        text="al in L newfield",
        finish_reason="length",
        generated_tokens=len(pieces),
        tokens=[TokenDetail(id=i, text=piece, logprob=-1.0) for i, piece in enumerate(pieces)],
    )
    logprobs = _logprobs(result, "al in L newfield", 0)
    assert logprobs.tokens == ["al", " in", " L", " new", "field"]
    assert logprobs.text_offset == [0, 2, 5, 7, 11]
