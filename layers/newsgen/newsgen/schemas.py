"""Request and response models shared by the API, the batch jobs and the docs (OpenAPI is generated from
them). Limits are static so that the published spec states them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_RESULTS = 8  # n per request
MAX_NEW_TOKENS = 256
MAX_TOTAL_NEW_TOKENS = 1024  # n × max_new_tokens per request: bounds one request's compute
MAX_PROMPT_CHARS = 1000
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 50
# Strictly positive, but not so small that logits / temperature overflow to inf.
MIN_TEMPERATURE = 0.01
# Nesting of a request body. Ours needs 3 ({"parameters": {"stop": [...]}}); JSON nested a few thousand deep
# makes Python's parser (and pydantic) raise RecursionError, so deeper bodies are refused before parsing.
MAX_JSON_DEPTH = 32
# Rounds of redrawing the texts that repeat an earlier one, for a request with unique=true: sampling may draw the
# same text twice, the more so from a small model and a short text (a headline).
MAX_UNIQUE_REDRAWS = 3

# A JSON string (escapes included), a bracket, or a quote that opens a string never closed.
_JSON_NESTING_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"')


def json_nesting_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, read without parsing it (brackets inside
    strings do not count). Valid or not: malformed JSON that is not too deep is left to the parser."""
    depth = 0
    for match in _JSON_NESTING_TOKENS.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > limit:
                return True
        elif token == "]" or token == "}":
            depth -= 1
        elif token == '"':  # an unterminated string runs to the end
            break
    return False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerationParameters(Strict):
    """Decoding parameters. Unset fields take the model's tuned defaults (its generation_config.json)."""

    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    do_sample: bool | None = None
    temperature: float | None = Field(None, ge=MIN_TEMPERATURE, le=100)
    top_k: int | None = Field(None, ge=0, le=50260)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, ge=0.01, le=100)
    no_repeat_ngram_size: int | None = Field(None, ge=0, le=32)
    num_beams: int | None = Field(None, ge=1, le=8)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP_SEQUENCES)
    details: bool = False

    @field_validator("temperature", mode="before")
    @classmethod
    def _greedy_is_not_a_temperature(cls, value):
        # OpenAI-style clients send temperature 0 for greedy decoding, which is a division by zero here.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < MIN_TEMPERATURE:
            raise ValueError(
                f"temperature must be at least {MIN_TEMPERATURE}; for greedy decoding use do_sample=false "
                "(and leave temperature out)"
            )
        return value

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop: list[str]) -> list[str]:
        for item in stop:
            if not item or len(item) > MAX_STOP_CHARS:
                raise ValueError(f"each stop sequence must have 1 to {MAX_STOP_CHARS} characters")
        return stop

    @model_validator(mode="after")
    def _beam_search(self):
        if (self.num_beams or 1) > 1:
            if self.do_sample:
                raise ValueError("num_beams > 1 is beam search: it cannot be combined with do_sample=true")
            if self.seed is not None:
                raise ValueError("seed has no effect with beam search (num_beams > 1): leave it out")
        return self


def _clean_text(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if any(ord(ch) < 32 and ch not in "\t\n" for ch in value) or "\x7f" in value:
        raise ValueError(f"{field} contains control characters")
    return value


def unique_field(texts: str):
    return Field(
        False,
        description=f"Sampling may draw the same {texts} twice. true: redraw the repeats (up to "
        f"{MAX_UNIQUE_REDRAWS} rounds, within the time budget); the response's `unique` says how many of its "
        "results are distinct, and they come first. Beam search and greedy decoding are left as they are.",
    )


class PromptRequest(Strict):
    """A request of /v1/headlines: n headlines."""

    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="How each headline starts.")
    n: int = Field(1, ge=1, le=MAX_RESULTS, description="How many headlines to generate.")
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    unique: bool = unique_field("headline")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return _clean_text(value, "prompt")


NEWS_TAKES_PART_PARAMETERS = (
    "/v1/news generates with two models: give headline_parameters and article_parameters (each part's decoding "
    "parameters; unset ones are that model's defaults), not parameters"
)


class NewsRequest(Strict):
    """A request of /v1/news: n headline + article pairs, each part decoded with its own parameters."""

    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="How each headline starts.")
    n: int = Field(1, ge=1, le=MAX_RESULTS, description="How many news items to generate.")
    headline_parameters: GenerationParameters = Field(
        default_factory=GenerationParameters, description="Decoding of the headlines; unset: the headline model's."
    )
    article_parameters: GenerationParameters = Field(
        default_factory=GenerationParameters,
        description="Decoding of the articles; unset: the article model's. Without its own seed the article part "
        "uses the headline part's, so one seed reproduces the whole item.",
    )
    unique: bool = unique_field("headline")

    @model_validator(mode="before")
    @classmethod
    def _no_shared_parameters(cls, data):
        if isinstance(data, dict) and "parameters" in data:
            raise ValueError(NEWS_TAKES_PART_PARAMETERS)
        return data

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return _clean_text(value, "prompt")


class ArticleRequest(Strict):
    headline: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The headline to write under.")
    n: int = Field(1, ge=1, le=MAX_RESULTS)
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    unique: bool = unique_field("article")

    @field_validator("headline")
    @classmethod
    def _headline(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("headline must not be blank")
        _clean_text(value, "headline")
        return value


FinishReason = Literal["eos_token", "length", "stop_sequence", "time"]


class TokenDetail(BaseModel):
    id: int
    text: str
    logprob: float | None = None


class GeneratedText(BaseModel):
    text: str
    finish_reason: FinishReason
    generated_tokens: int
    tokens: list[TokenDetail] | None = Field(None, exclude_if=lambda value: value is None)


class NewsItem(BaseModel):
    headline: GeneratedText
    article: GeneratedText


class ModelRef(BaseModel):
    task: str
    version: str


def model_id(task: str, version: str) -> str:
    """How a served model is named in one string (/health, the OpenAI-compatible routes): task:version."""
    return f"{task}:{version}"


class WatermarkInfo(BaseModel):
    scheme: str = Field(
        description="kgw-lefthash-1: transformers' green-list watermark (25 % of the vocabulary "
        "green at each step, chosen by a secret key and the previous token)."
    )
    key_id: str = Field(description="Which key marked the text (not the key): detection names it back.")
    detect: str = "POST /v1/detect"


class Provenance(BaseModel):
    synthetic: Literal[True] = True
    notice: str = "Machine-generated text from a language model trained on news. It is not news and not true."
    models: list[ModelRef]
    parameters: dict[str, dict] = Field(
        description="Per task (headline, article): the effective decoding parameters, the model's defaults "
        "included, and the seed where sampled."
    )
    seed: int | None = Field(description="The seed that reproduces the whole response with the same request.")
    created_at: str
    watermark: WatermarkInfo | None = Field(
        description="The statistical watermark the texts carry; null only where the deployment turned it off."
    )


def unique_count_field(which: str):
    return Field(
        None,
        exclude_if=lambda value: value is None,
        description=f"Only with unique=true: how many {which} (the first ones); the rest repeat one of them "
        "where the redraws found nothing new.",
    )


class GenerationResponse(BaseModel):
    results: list[GeneratedText]
    model: list[ModelRef] = Field(description="The model versions that wrote the texts (one per task).")
    synthetic: Literal[True] = True
    provenance: Provenance
    unique: int | None = unique_count_field("results are distinct")

    def generated_tokens(self) -> int:
        return sum(r.generated_tokens for r in self.results)


class NewsResponse(BaseModel):
    results: list[NewsItem]
    model: list[ModelRef] = Field(description="The model versions that wrote the texts (one per task).")
    synthetic: Literal[True] = True
    provenance: Provenance
    unique: int | None = unique_count_field("results have distinct headlines")

    def generated_tokens(self) -> int:
        return sum(i.headline.generated_tokens + i.article.generated_tokens for i in self.results)


MAX_DETECT_TEXTS = 16
MAX_DETECT_CHARS = 20_000


class DetectRequest(Strict):
    """One text, or several: each is judged on its own."""

    text: str | None = Field(None, min_length=1, max_length=MAX_DETECT_CHARS)
    texts: list[Annotated[str, Field(min_length=1, max_length=MAX_DETECT_CHARS)]] | None = Field(
        None, min_length=1, max_length=MAX_DETECT_TEXTS
    )

    @model_validator(mode="after")
    def _one_form(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either 'text' or 'texts'")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class DetectionResult(BaseModel):
    watermarked: bool | None = Field(description="null when the text is too short or too predictable to judge.")
    verdict: Literal["watermarked", "not_watermarked", "too_short", "too_predictable"] = Field(
        description="too_predictable: long enough, but the model had too few choices in it to carry the mark."
    )
    score: float | None = Field(
        description="z-score of the green-token count under the best-matching key, over the tokens where the "
        "model had a real choice."
    )
    p_value: float | None = Field(description="Chance of a score this high in unmarked text (all keys counted).")
    tokens_scored: int
    key_id: str | None = Field(description="The key that marked the text, when watermarked.")


class DetectResponse(BaseModel):
    results: list[DetectionResult]
    scheme: str
    threshold: float = Field(description="z-score from which a text counts as watermarked.")
    min_tokens: int = Field(description="Texts with fewer scored tokens are too short to judge.")


class ErrorResponse(BaseModel):
    error: str
    error_type: str
    details: list | dict | None = None
    request_id: str | None = Field(
        None, description="Quote it when reporting a problem: the logs hold the full error under this id."
    )


class ModelInfo(BaseModel):
    task: str
    version: str
    base_model: str
    export: str
    created_at: str
    metrics: dict
    data_fingerprint: str | None
    context_length: int


class OpenAIModel(BaseModel):
    """A model in OpenAI's model list."""

    id: str = Field(description="task:version, usable as a completion's model.")
    object: Literal["model"] = "model"
    created: int = Field(description="When the version was published (Unix seconds).")
    owned_by: str = "newsgen"


class ModelsResponse(BaseModel):
    """Our model list (`models`) and, beside it, the same models in OpenAI's list shape (`object`, `data`), so
    that one answer serves our clients and OpenAI's `client.models.list()` alike."""

    models: list[ModelInfo]
    object: Literal["list"] = "list"
    data: list[OpenAIModel]

    @classmethod
    def of(cls, models: list[ModelInfo]) -> ModelsResponse:
        data = [
            OpenAIModel(
                id=model_id(m.task, m.version), created=int(dt.datetime.fromisoformat(m.created_at).timestamp())
            )
            for m in models
        ]
        return cls(models=models, data=data)


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    models_loaded: list[str]
