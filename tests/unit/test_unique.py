"""unique=true: sampling may draw the same text twice; the repeats are drawn again with the next seeds, a bounded
number of times, and the response says how many of its results are distinct."""

from __future__ import annotations

import pytest

from newsgen.prompt import Task
from newsgen.schemas import (
    MAX_UNIQUE_REDRAWS,
    GeneratedText,
    GenerationParameters,
    GenerationResponse,
    ModelRef,
    PromptRequest,
    Provenance,
)
from newsgen.service import NewsService
from newsgen.settings import Settings


def response(texts: list[str], seed: int | None, finish_reason: str = "length") -> GenerationResponse:
    ref = ModelRef(task="headline", version="v1")
    sampled = {"do_sample": seed is not None, **({"seed": seed} if seed is not None else {})}
    provenance = Provenance(
        models=[ref],
        parameters={"headline": sampled},
        seed=seed,
        created_at="2026-01-01T00:00:00+00:00",
        watermark=None,
    )
    results = [GeneratedText(text=t, finish_reason=finish_reason, generated_tokens=3) for t in texts]
    return GenerationResponse(results=results, model=[ref], provenance=provenance)


class Script:
    """A draw that answers each call from a script of texts per seed, and records the calls."""

    def __init__(self, by_seed: dict[int | None, list[str]], cut_short: frozenset[int] = frozenset()):
        self.by_seed, self.cut_short, self.calls = by_seed, cut_short, []

    def __call__(self, n: int, params: GenerationParameters, deadline: float | None) -> GenerationResponse:
        self.calls.append((n, params.seed))
        texts = self.by_seed[params.seed][:n]
        return response(texts, params.seed, "time" if params.seed in self.cut_short else "length")


@pytest.fixture
def service() -> NewsService:
    return NewsService(Settings(model_bucket="unused"))


def test_repeats_are_drawn_again_with_the_next_seeds(service):
    draw = Script({7: ["a", "a", "b", "a"], 8: ["c", "b"], 9: ["d"]})
    out = service._draw(draw, 4, GenerationParameters(seed=7), Task.HEADLINE, True, None)
    assert [r.text for r in out.results] == ["a", "b", "c", "d"] and out.unique == 4
    assert draw.calls == [(4, 7), (2, 8), (1, 9)]  # only the repeats, each round with the next seed
    assert out.provenance.seed == 7  # the request's seed reproduces the whole response


def test_redraws_are_bounded_and_the_response_says_how_many_are_distinct(service):
    draw = Script({seed: ["a", "a", "a"] for seed in range(1, 10)})
    out = service._draw(draw, 3, GenerationParameters(seed=1), Task.HEADLINE, True, None)
    assert len(draw.calls) == 1 + MAX_UNIQUE_REDRAWS
    assert [r.text for r in out.results] == ["a", "a", "a"] and out.unique == 1
    assert out.model_dump()["unique"] == 1


def test_a_redraw_cut_short_by_the_time_budget_is_not_taken(service):
    draw = Script({1: ["a", "a"], 2: ["cut"], 3: ["b"]}, cut_short=frozenset({2}))
    out = service._draw(draw, 2, GenerationParameters(seed=1), Task.HEADLINE, True, None)
    assert [r.text for r in out.results] == ["a", "b"] and out.unique == 2


def test_without_unique_or_sampling_nothing_is_drawn_again(service):
    draw = Script({1: ["a", "a"]})
    plain = service._draw(draw, 2, GenerationParameters(seed=1), Task.HEADLINE, False, None)
    assert [r.text for r in plain.results] == ["a", "a"] and "unique" not in plain.model_dump()
    greedy = Script({None: ["a", "a"]})
    out = service._draw(greedy, 2, GenerationParameters(), Task.HEADLINE, True, None)
    assert len(greedy.calls) == 1 and out.unique == 1


def test_unique_is_a_field_of_the_generating_requests():
    from newsgen.schemas import ArticleRequest, NewsRequest

    assert PromptRequest(unique=True).unique and NewsRequest(unique=True).unique
    assert ArticleRequest(headline="Storm closes the bridge", unique=True).unique
    assert not PromptRequest().unique
