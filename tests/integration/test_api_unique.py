"""`"unique": true` through the API handler, on the tiny models: the response counts its distinct results."""

from __future__ import annotations

from conftest import call


def distinct_first(texts: list[str], unique: int) -> bool:
    return len(set(texts[:unique])) == unique == len(set(texts))


def test_headlines_and_news_say_how_many_results_are_distinct(api):
    # Nearly greedy sampling: the same headline again and again, the case that unique is for.
    sampling = {"temperature": 0.01, "seed": 5, "max_new_tokens": 6}
    status, plain = call(api, "POST", "/v1/headlines", {"prompt": "City council", "n": 3, "parameters": sampling})
    assert status == 200 and "unique" not in plain
    request = {"prompt": "City council", "n": 3, "parameters": sampling, "unique": True}
    status, body = call(api, "POST", "/v1/headlines", request)
    texts = [r["text"] for r in body["results"]]
    assert status == 200 and len(texts) == 3 and distinct_first(texts, body["unique"]), body
    assert call(api, "POST", "/v1/headlines", request)[1]["results"] == body["results"]  # the seed reproduces it
    news = {"n": 2, "headline_parameters": sampling, "article_parameters": {"max_new_tokens": 6}, "unique": True}
    status, body = call(api, "POST", "/v1/news", news)
    headlines = [item["headline"]["text"] for item in body["results"]]
    assert status == 200 and len(headlines) == 2 and distinct_first(headlines, body["unique"]), body
