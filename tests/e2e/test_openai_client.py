"""The official `openai` Python client against the plain local server: /v1/completions and /v1/models speak
OpenAI's API well enough for it."""

import openai
import pytest
from openai import OpenAI

HEADLINE = "City council approves a new harbor ferry line"


@pytest.fixture
def client(server):
    # No retries: a refused request must surface at once, and a 5xx here is a failure, not something to retry.
    return OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def test_headlines(client):
    completion = client.completions.create(model="headline", prompt="Storm", max_tokens=16, n=2, seed=1)
    assert completion.object == "text_completion" and completion.model == "headline:v1"
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert all(choice.finish_reason in ("stop", "length") for choice in completion.choices)
    assert completion.usage is not None and completion.usage.completion_tokens >= 2
    extra = completion.model_extra or {}  # our fields beyond OpenAI's, kept by the client
    assert extra["synthetic"] is True and extra["provenance"]["seed"] == 1
    again = client.completions.create(model="headline", prompt="Storm", max_tokens=16, n=2, seed=1)
    assert [c.text for c in again.choices] == [c.text for c in completion.choices]


def test_article_for_a_headline(client):
    completion = client.completions.create(model="article", prompt=HEADLINE, max_tokens=24, seed=3, echo=True)
    text = completion.choices[0].text
    assert text.startswith(HEADLINE + "\n") and len(text) > len(HEADLINE) + 1


def test_stop(client):
    completion = client.completions.create(model="article", prompt=HEADLINE, max_tokens=40, seed=2, stop=[".", "!"])
    assert "." not in completion.choices[0].text and "!" not in completion.choices[0].text


def test_logprobs(client):
    completion = client.completions.create(model="headline", prompt="Storm", max_tokens=8, seed=2, logprobs=1)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.text_offset
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset)
    assert all(value <= 0 for value in logprobs.token_logprobs)


@pytest.mark.parametrize(
    "request_fields, fragment",
    [
        ({"stream": True}, "streaming is not supported"),
        ({"presence_penalty": 0.5}, "presence_penalty: not supported"),
        ({"max_tokens": 100_000}, "max_tokens"),
    ],
)
def test_refusals_are_bad_request_errors_with_our_message(client, request_fields, fragment):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="headline", prompt="Storm", **request_fields)
    assert raised.value.status_code == 400 and fragment in raised.value.message
    assert isinstance(raised.value.body, dict) and raised.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.completions.create(model="headline:20000101T000000Z", prompt="Storm")
    assert raised.value.code == "model_not_found" and "serves headline:v1" in raised.value.message


def test_models_list(client):
    models = client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [
        ("headline:v1", "model", "newsgen"),
        ("article:v1", "model", "newsgen"),
    ]
    assert all(m.created > 0 for m in models.data)
