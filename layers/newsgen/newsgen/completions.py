"""OpenAI's legacy completions API (`POST /v1/completions`, the text-completion one that TGI, vLLM and
llama.cpp's server offer too) mapped onto the news service, so that any OpenAI client can call newsgen.

GPT-2 is not a chat model, so only the completions form is offered. `model` names a task (`headline`,
`article`) or a served version of it (`headline:<version>`); `prompt` is how the headline starts (empty
allowed) or the headline to write the article under. The limits are newsgen's own (newsgen.schemas), and
every response still says it is synthetic and carries the provenance record (the watermark applies).

Where OpenAI and newsgen differ:
- An unset `max_tokens`, `temperature` or `top_p` takes the model's tuned default (its generation_config),
  not OpenAI's 16 / 1 / 1; the model's other tuned settings (top_k, repetition_penalty,
  no_repeat_ngram_size) always apply. `temperature: 0` is greedy decoding.
- `logprobs` gives the chosen tokens' log-probabilities under the distribution they were drawn from (after the
  watermark and the sampling warpers); `top_logprobs` holds only the chosen token (one-entry dicts), as
  newsgen does not keep the alternatives.
- `finish_reason` is "stop" for the end of the text or a stop sequence, and "length" for max_tokens or for
  the time budget running out.
- Parameters newsgen has no equivalent for (`stream`, `presence_penalty`, `frequency_penalty`, `logit_bias`,
  `suffix`, `best_of` above `n`, `echo` with `logprobs`) are accepted at their defaults; any other value is a
  400 naming the parameter, so that nothing is silently ignored.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from newsgen import generation, prompt
from newsgen.errors import InvalidRequest, NewsgenError
from newsgen.prompt import Task
from newsgen.schemas import (
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_RESULTS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_TOTAL_NEW_TOKENS,
    MIN_TEMPERATURE,
    GeneratedText,
    GenerationParameters,
    Provenance,
    Strict,
    _clean_text,
    model_id,
)

SPECIAL_NAMES = frozenset({prompt.BOS, prompt.EOS, prompt.PAD, prompt.SEP})
MAX_LOGPROBS = 5  # OpenAI's own limit for the legacy completions API
# How `echo` joins an article to its headline: the model sees a separator token there (newsgen.prompt.SEP).
ARTICLE_ECHO_SEPARATOR = "\n"
OpenAIFinishReason = Literal["stop", "length"]
OPENAI_FINISH_REASONS: dict[str, OpenAIFinishReason] = {
    "eos_token": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "time": "length",  # cut short by the time budget: truncated, as by max_tokens
}


class ModelNotFound(NewsgenError, error_type="model_not_found", status_code=404):
    """A completion's `model` names no task, or a version that is not the one served."""


class UnsupportedParameter(InvalidRequest, error_type="unsupported_parameter"):
    """An OpenAI parameter newsgen has no equivalent for, set to something other than its default."""


def _string_or_strings(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate `str | list[str]` with the error of the form the value has, not one per union member."""
    try:
        return handler(value)
    except ValidationError as exc:
        if not isinstance(value, str | list):
            raise PydanticCustomError("string_or_list", "must be a string or a list of strings") from None
        in_list = isinstance(value, list)
        problems = [e for e in exc.errors() if str(e["loc"][0]).startswith("list") == in_list] or exc.errors()
        where = "".join(f"[{part}]" for part in problems[0]["loc"][1:])
        raise PydanticCustomError(
            problems[0]["type"], "{where}{message}", {"where": where and f"{where}: ", "message": problems[0]["msg"]}
        ) from None


PromptText = Annotated[str, Field(max_length=MAX_PROMPT_CHARS), AfterValidator(lambda v: _clean_text(v, "prompt"))]
StopText = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class CompletionRequest(Strict):
    """OpenAI's legacy completion request. Unknown fields are refused, as OpenAI refuses them."""

    model: str = Field(
        max_length=200,
        description="`headline` or `article` (the served version), or `task:version` to insist on a version "
        "(GET /v1/models lists them); another version is a 404.",
    )
    prompt: PromptText | Annotated[list[PromptText], Field(min_length=1, max_length=MAX_RESULTS)] = Field(
        "",
        description="For `headline`, how each headline starts (empty: from scratch); for `article`, the "
        "headline to write under. A list gives n completions for each prompt.",
    )
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="Unset: the model's default.")
    temperature: float | None = Field(
        None, ge=0, le=2, description="0: greedy decoding; unset: the model's default sampling."
    )
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_RESULTS, description=f"Per prompt; n × prompts ≤ {MAX_RESULTS}.")
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_LOGPROBS,
        description="Any value returns the chosen tokens' logprobs; top_logprobs holds only the chosen token.",
    )
    echo: bool = Field(False, description="Put the prompt before each completion (an article: headline, newline).")
    best_of: int | None = Field(None, ge=1, le=MAX_RESULTS, description="Unset or equal to n only.")
    stream: bool | None = Field(False, description="false only: streaming is not supported.")
    presence_penalty: float | None = Field(0, ge=-2, le=2, description="0 only.")
    frequency_penalty: float | None = Field(0, ge=-2, le=2, description="0 only.")
    logit_bias: dict[str, float] | None = Field(None, description="Empty only.")
    suffix: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="Empty only.")
    # Accepted for compatibility; excluded from model_dump so that it never reaches a log.
    user: str | None = Field(None, max_length=256, exclude=True)

    _prompt_forms = field_validator("prompt", "stop", mode="wrap")(_string_or_strings)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float | None) -> float | None:
        if value is not None and 0 < value < MIN_TEMPERATURE:
            raise ValueError(f"must be 0 (greedy decoding) or at least {MIN_TEMPERATURE}")
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]] = Field(description="Only the chosen token, with its logprob.")
    text_offset: list[int] = Field(description="Where each token starts in the choice's text.")


class CompletionChoice(BaseModel):
    text: str
    index: int = Field(description="Runs across prompts × n: prompt i's j-th completion is i × n + j.")
    finish_reason: OpenAIFinishReason
    logprobs: CompletionLogprobs | None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str = Field(description="The version that wrote the texts, as task:version.")
    choices: list[CompletionChoice]
    usage: CompletionUsage
    synthetic: Literal[True] = True
    provenance: Provenance

    def generated_tokens(self) -> int:
        return self.usage.completion_tokens


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error for 4xx, server_error for 5xx.")
    param: str | None = Field(description="The request field at fault, where one is.")
    code: str | None = Field(description="newsgen's error_type: validation_error, model_not_found, …")


class OpenAIErrorResponse(BaseModel):
    error: OpenAIError


def error_body(status: int, message: str, error_type: str, param: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape, which its clients turn into their exceptions with this message."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": error_type}}


def resolve_model(service, name: str):
    """The served model a completion's `model` names: (task, loaded model, the version asked for or None)."""
    task_name, _, version = name.partition(":")
    try:
        task = Task(task_name)
    except ValueError:
        raise ModelNotFound(
            f"model {name!r} does not exist: use one of {', '.join(Task)}, optionally as task:version",
            param="model",
        ) from None
    loaded = service.model(task)
    if version and version != loaded.version:
        raise ModelNotFound(
            f"model {name!r} is not served here: this deployment serves {model_id(task, loaded.version)}",
            param="model",
        )
    return task, loaded, version or None


def decoding_parameters(request: CompletionRequest) -> GenerationParameters:
    """OpenAI's sampling fields as newsgen's decoding parameters; unset ones keep the model's defaults."""
    values: dict[str, Any] = {
        "max_new_tokens": request.max_tokens,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": request.stops(),
        "details": request.logprobs is not None,
    }
    if request.temperature == 0:
        values["do_sample"] = False  # OpenAI's greedy decoding
    elif request.temperature is not None:
        values.update(do_sample=True, temperature=request.temperature)
    elif request.top_p is not None:
        values["do_sample"] = True  # top_p means sampling, whatever the model's default
    try:
        return GenerationParameters(**values)
    except ValidationError as exc:  # the request's own bounds are these; kept as a guard against drift
        raise InvalidRequest(f"invalid decoding parameters: {exc.errors()[0]['msg']}") from None


def _refuse_unsupported(request: CompletionRequest) -> None:
    if request.stream:
        raise UnsupportedParameter("stream: streaming is not supported; send stream=false", param="stream")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise UnsupportedParameter(f"{name}: not supported; leave it out or send 0", param=name)
    if request.logit_bias:
        raise UnsupportedParameter("logit_bias: not supported; leave it out or send {}", param="logit_bias")
    if request.suffix:
        raise UnsupportedParameter("suffix: not supported (insertion); leave it out", param="suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise UnsupportedParameter(
            f"best_of: only best_of = n ({request.n}) is supported; leave it out", param="best_of"
        )
    if request.echo and request.logprobs is not None:
        raise UnsupportedParameter(
            "echo: echo with logprobs is not supported (the prompt's logprobs are not computed)", param="echo"
        )


def _prompt_tokens(loaded, prompts: list[str]) -> list[int]:
    """How many tokens each prompt is for the model: the prompt format's special tokens included."""
    texts = prompt.prompts_for(loaded.task, prompts, loaded.manifest.prompt_format)
    return [len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def _check_request(
    request: CompletionRequest, task: Task, prompts: list[str], prompt_tokens: list[int], params, loaded
) -> None:
    """Requests newsgen would refuse, refused with OpenAI's names for the fields, before generating."""
    for i, text in enumerate(prompts):
        where = f"prompt[{i}]" if isinstance(request.prompt, list) else "prompt"
        if task is Task.ARTICLE and not text.strip():
            raise InvalidRequest(f"{where}: the headline to write the article under must not be blank", param="prompt")
    if len(prompts) * request.n > MAX_RESULTS:
        raise InvalidRequest(
            f"n {request.n} × {len(prompts)} prompts asks for {len(prompts) * request.n} completions, over the "
            f"limit of {MAX_RESULTS} per request",
            param="n",
        )
    decoding = generation.effective_parameters(loaded, params)
    if request.n > 1 and not decoding.get("do_sample"):
        raise InvalidRequest(
            f"n={request.n} with greedy decoding (temperature 0) would repeat one text: use a temperature "
            "above 0, or n=1",
            param="n",
        )
    longest = max(prompt_tokens)
    if longest + decoding["max_new_tokens"] > loaded.context_length:
        raise InvalidRequest(
            f"a prompt of {longest} tokens + max_tokens {decoding['max_new_tokens']} exceeds the model's context "
            f"of {loaded.context_length} tokens: shorten the prompt or lower max_tokens",
            param="prompt",
        )
    tokens = len(prompts) * request.n * decoding["max_new_tokens"]
    if tokens > MAX_TOTAL_NEW_TOKENS:
        source = ", the model's default" if request.max_tokens is None else ""
        raise InvalidRequest(
            f"this request may generate {tokens} tokens ({len(prompts)} prompts × n {request.n} × max_tokens "
            f"{decoding['max_new_tokens']}{source}), over the per-request budget of {MAX_TOTAL_NEW_TOKENS}: "
            "lower n, max_tokens or the number of prompts",
            param="max_tokens",
            tokens=tokens,
            budget=MAX_TOTAL_NEW_TOKENS,
        )


def complete(service, request: CompletionRequest, deadline: float | None = None) -> CompletionResponse:
    """Answer an OpenAI completion request with the news service (one batched generate call)."""
    _refuse_unsupported(request)
    task, loaded, asked_version = resolve_model(service, request.model)
    prompts = request.prompts()
    params = decoding_parameters(request)
    prompt_tokens = _prompt_tokens(loaded, prompts)
    _check_request(request, task, prompts, prompt_tokens, params, loaded)
    if task is Task.HEADLINE:
        responses = service.headlines_many(prompts, request.n, params, deadline)
    else:
        responses = service.articles_many(prompts, request.n, params, deadline)
    provenance = responses[0].provenance
    version = next(m.version for m in provenance.models if m.task == task)
    if asked_version is not None and version != asked_version:  # LATEST moved while this request ran
        raise ModelNotFound(
            f"model {request.model!r} is no longer served: this deployment now serves {model_id(task, version)}",
            param="model",
        )
    choices = [
        _choice(i * request.n + j, text, task, result, request.echo)
        for i, (text, response) in enumerate(zip(prompts, responses, strict=True))
        for j, result in enumerate(response.results)
    ]
    completion_tokens = sum(response.generated_tokens() for response in responses)
    return CompletionResponse(
        id=f"cmpl-{secrets.token_hex(12)}",
        created=int(time.time()),
        model=model_id(task, version),
        choices=choices,
        usage=CompletionUsage(
            prompt_tokens=sum(prompt_tokens),
            completion_tokens=completion_tokens,
            total_tokens=sum(prompt_tokens) + completion_tokens,
        ),
        provenance=provenance,
    )


def _continuation(task: Task, prompt_text: str, result: GeneratedText) -> str:
    """The generated text alone. The service gives a headline with its prompt in front, and every text
    stripped: a prompt that ended in a space is followed by the next word, not by a second space."""
    if task is Task.ARTICLE:
        return result.text
    for start in (prompt_text.lstrip(), prompt_text.strip()):
        if result.text.startswith(start):
            return result.text[len(start) :]
    return result.text  # not reached: (prompt + text).strip() always starts with prompt.strip()


def _choice(index: int, prompt_text: str, task: Task, result: GeneratedText, echo: bool) -> CompletionChoice:
    text = _continuation(task, prompt_text, result)
    head = ""
    if echo:
        head = prompt_text + (ARTICLE_ECHO_SEPARATOR if task is Task.ARTICLE else "")
    return CompletionChoice(
        text=head + text,
        index=index,
        finish_reason=OPENAI_FINISH_REASONS[result.finish_reason],
        logprobs=_logprobs(result, text, len(head)) if result.tokens is not None else None,
    )


def _logprobs(result: GeneratedText, text: str, base: int) -> CompletionLogprobs:
    """The tokens that make up `text`, with where each starts. The generated tokens spell more than `text`:
    the prompt's healed end (newsgen.generation's token healing re-spells it), whitespace stripped from the start,
    the end-of-text token and whatever followed a stop sequence. Tokens wholly outside `text` are left out and
    one that straddles its start is listed with the part inside, so the listed tokens join into `text`. Special
    tokens (a <|SEP|> the model put inside a text) are no part of the text, as decoding skips them."""
    tokens = [t for t in result.tokens or [] if t.text not in SPECIAL_NAMES]
    generated = "".join(t.text for t in tokens)
    skipped = max(generated.find(text), 0) if text else 0
    out = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
    position = -skipped
    for token in tokens:
        start, position = position, position + len(token.text)
        if position <= 0 and token.text:
            continue  # all of it before the text
        if start >= len(text) or not text:
            break
        piece = token.text[max(-start, 0) :]
        out.tokens.append(piece)
        out.token_logprobs.append(token.logprob)
        out.top_logprobs.append({piece: token.logprob} if token.logprob is not None else {})
        out.text_offset.append(base + max(start, 0))
    return out
