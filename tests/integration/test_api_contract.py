"""The API's contract as a newcomer meets it: one shape for `model`, each /v1/news part with its own
parameters and honest provenance, and error messages that say what to do."""

import json

import pytest
from conftest import call

HEADLINE = "Parents in Westmere sue over night bus routes"


@pytest.mark.parametrize(
    "path, body, tasks",
    [
        ("/v1/headlines", {"parameters": {"max_new_tokens": 4}}, ["headline"]),
        ("/v1/articles", {"headline": HEADLINE, "parameters": {"max_new_tokens": 4}}, ["article"]),
        ("/v1/news", {"headline_parameters": {"max_new_tokens": 4}}, ["headline", "article"]),
    ],
)
def test_model_is_a_list_of_refs_on_every_route(api, path, body, tasks):
    status, answer = call(api, "POST", path, body)
    assert status == 200, answer
    assert [ref["task"] for ref in answer["model"]] == tasks
    assert answer["provenance"]["models"] == answer["model"]
    assert sorted(answer["provenance"]["parameters"]) == sorted(tasks)


def test_news_parts_take_their_own_parameters(api):
    request = {
        "headline_parameters": {"max_new_tokens": 6, "seed": 4},
        "article_parameters": {"max_new_tokens": 40, "do_sample": False, "repetition_penalty": 1.3},
    }
    status, body = call(api, "POST", "/v1/news", request)
    assert status == 200, body
    item = body["results"][0]
    assert item["headline"]["generated_tokens"] <= 6
    used = body["provenance"]["parameters"]
    assert used["headline"]["max_new_tokens"] == 6 and used["headline"]["seed"] == 4
    assert used["article"]["max_new_tokens"] == 40 and used["article"]["do_sample"] is False
    assert used["article"]["repetition_penalty"] == 1.3 and "seed" not in used["article"]
    assert item["article"]["generated_tokens"] <= 40
    if item["article"]["finish_reason"] == "length":
        assert item["article"]["generated_tokens"] == 40


def test_news_provenance_states_each_parts_defaults(api, published):
    """Unset parameters are each model's own defaults, and provenance says which were used: an article that
    generated more tokens than the headline's max_new_tokens is no contradiction."""
    status, body = call(api, "POST", "/v1/news", {"n": 2})
    assert status == 200, body
    used = body["provenance"]["parameters"]
    for item in body["results"]:
        assert item["headline"]["generated_tokens"] <= used["headline"]["max_new_tokens"]
        assert item["article"]["generated_tokens"] <= used["article"]["max_new_tokens"]
    # one seed reproduces the whole item: the article part uses the headline part's unless given its own
    assert used["headline"]["seed"] == used["article"]["seed"] == body["provenance"]["seed"]


def test_news_with_one_seed_is_reproducible(api):
    request = {
        "n": 2,
        "headline_parameters": {"seed": 9, "max_new_tokens": 8},
        "article_parameters": {"max_new_tokens": 8},
    }
    assert call(api, "POST", "/v1/news", request)[1]["results"] == call(api, "POST", "/v1/news", request)[1]["results"]


def test_news_refuses_one_shared_parameters_block(api):
    status, body = call(api, "POST", "/v1/news", {"parameters": {"max_new_tokens": 20}})
    assert status == 400, body
    assert "headline_parameters" in body["error"] and "article_parameters" in body["error"]


@pytest.mark.parametrize(
    "raw, position",
    [
        ('{"n": 2,', "line 1 column 9"),
        ("not json at all", "line 1 column 1"),
        ('{"n": 2}\n{"n": 3}', "line 2 column 1"),
    ],
)
def test_a_body_that_is_not_json_says_so_and_where(api, raw, position):
    status, body = call(api, "POST", "/v1/headlines", raw=raw)
    assert status == 400, body
    assert body["error_type"] == "validation_error"
    assert body["error"].startswith("body is not valid JSON: ") and position in body["error"], body["error"]


@pytest.mark.parametrize("temperature", [0, 0.0, 0.001])
def test_temperature_zero_points_to_greedy_decoding(api, temperature):
    status, body = call(api, "POST", "/v1/headlines", {"parameters": {"temperature": temperature}})
    assert status == 400, body
    assert "do_sample=false" in body["error"] and "temperature" in body["error"], body["error"]
    assert body["error"].startswith("parameters.temperature: temperature must be at least 0.01;"), body["error"]


class RecordingService:
    """The batch interface of the news service, recording the parameters each call received."""

    def __init__(self):
        from conftest import EchoService

        self.echo, self.calls = EchoService(), []

    def news_many(self, prompts, n, headline_params, article_params, deadline=None):
        self.calls.append((headline_params.max_new_tokens, article_params.max_new_tokens))
        return self.echo.news_many(prompts, n, headline_params, article_params, deadline)

    def headlines_many(self, prompts, n, params, deadline=None):
        self.calls.append((params.max_new_tokens,))
        return self.echo.headlines_many(prompts, n, params, deadline)

    articles_many = headlines_many


def test_batch_news_lines_take_each_parts_parameters_and_csv_columns_too():
    from newsgen.batch.inputs import Record
    from newsgen.batch.requests import process_records

    lines = [
        {
            "id": "a",
            "task": "news",
            "headline_parameters": {"max_new_tokens": 6},
            "article_parameters": {"max_new_tokens": 50},
        },
        {"id": "b", "task": "news", "parameters": {"max_new_tokens": 6}},
        {"id": "c", "task": "headline", "article_parameters": {"max_new_tokens": 6}},
        {"id": "d", "task": "headline", "parameters": {"max_new_tokens": 7}},
    ]
    records = [Record(line=i + 1, start=0, end=0, raw=json.dumps(line)) for i, line in enumerate(lines)]
    records.append(
        Record(
            line=5,
            start=0,
            end=0,
            fields={
                "id": "e",
                "task": "news",
                "article_parameters": '{"max_new_tokens": 9}',
                "headline_parameters": "{",
            },
        )
    )
    service = RecordingService()
    entries = process_records(service, records, deadline=None)
    assert "result" in entries[0] and "result" in entries[3]
    assert "headline_parameters" in entries[1]["error"]["error"]
    assert "for news" in entries[2]["error"]["error"]
    assert entries[4]["error"]["error"].startswith("headline_parameters column is not valid JSON")
    assert sorted(service.calls) == [(6, 50), (7,)]
