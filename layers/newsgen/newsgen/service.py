"""The news service: what the API and the batch jobs ask for, on top of the model store and generation.

Handlers parse events into the request models of newsgen.schemas and call these functions; every result is
labelled synthetic and carries a provenance record.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from newsgen import generation, prompt, watermark
from newsgen.errors import InvalidRequest, ModelUnavailable, NewsgenError
from newsgen.prompt import Task
from newsgen.schemas import (
    MAX_TOTAL_NEW_TOKENS,
    MAX_UNIQUE_REDRAWS,
    ArticleRequest,
    DetectionResult,
    DetectResponse,
    GeneratedText,
    GenerationParameters,
    GenerationResponse,
    ModelInfo,
    ModelRef,
    NewsItem,
    NewsRequest,
    NewsResponse,
    PromptRequest,
    Provenance,
    WatermarkInfo,
)
from newsgen.settings import Settings
from newsgen.store import LoadedModel, ModelStore

logger = logging.getLogger(__name__)

Drawn = TypeVar("Drawn", GenerationResponse, NewsResponse)
Result = GeneratedText | NewsItem
MIN_REDRAW_SECONDS = 1.0  # a unique=true redraw starts only with this much of the time budget left


class NewsService:
    def __init__(
        self,
        settings: Settings,
        store: ModelStore | None = None,
        on_model_loaded: Callable[[LoadedModel], None] | None = None,
    ):
        self.settings = settings
        self._store = store
        self._store_lock = threading.Lock()  # the init's preload thread and the first request both want it
        self.on_model_loaded = on_model_loaded
        self._keyring: watermark.Keyring | None = None
        self._watermarks: dict[int, watermark.GreenlistWatermark] = {}
        self._detectors: dict[int, watermark.Detector] = {}
        self._watermark_lock = threading.Lock()

    @property
    def store(self) -> ModelStore:
        with self._store_lock:
            if self._store is None:
                self._store = self._create_store()
            return self._store

    def _create_store(self) -> ModelStore:
        if not self.settings.model_bucket:
            raise ModelUnavailable(
                "MODEL_BUCKET is not set: the service does not know where models live", cause="not_configured"
            )
        from newsgen import s3

        return ModelStore(
            s3=s3.reader(self.settings.model_bucket),
            bucket=self.settings.model_bucket,
            prefix=self.settings.model_prefix,
            cache_dir=self.settings.model_cache_dir,
            latest_ttl_seconds=self.settings.latest_ttl_seconds,
            broken_ttl_seconds=self.settings.broken_version_ttl_seconds,
            on_loaded=self.on_model_loaded,
            quantize=self.settings.quantize,
            forward=self.settings.serving_forward,
        )

    def loaded_models(self) -> list[LoadedModel]:
        return self._store.loaded() if self._store is not None else []

    def model(self, task: Task) -> LoadedModel:
        version = {
            Task.HEADLINE: self.settings.headline_model_version,
            Task.ARTICLE: self.settings.article_model_version,
        }[task]
        return self.store.get(task, version)

    def preload(self, wait_seconds: float | None = None) -> bool:
        """Load every task's model; a failure is logged and left for the requests to report (503) and retry.

        With wait_seconds, loading runs in a background thread and this returns after at most that long:
        a request meanwhile waits on the store's lock for the model being loaded. Returns whether loading
        finished.
        """

        def load_all() -> None:
            for task in Task:  # one broken model does not keep the other from loading
                try:
                    self.model(task)
                except NewsgenError as exc:
                    logger.error("preload failed: %s", exc.message, extra={"error_type": exc.error_type})
            if self.settings.watermark:
                try:
                    self.keyring()
                except NewsgenError as exc:
                    logger.error("watermark keyring not loaded: %s", exc.message, extra={"error_type": exc.error_type})

        if wait_seconds is None:
            load_all()
            return True
        thread = threading.Thread(target=load_all, name="newsgen-preload", daemon=True)
        thread.start()
        thread.join(wait_seconds)
        return not thread.is_alive()

    # --- requests -------------------------------------------------------------------------------------
    # Each route has a "many" form: several prompts that share n and parameters go through one batched
    # generate call (the batch jobs use it); a single request is the one-prompt case.
    def headlines(self, request: PromptRequest, deadline: float | None = None) -> GenerationResponse:
        def draw(n: int, params: GenerationParameters, deadline: float | None) -> GenerationResponse:
            return self.headlines_many([request.prompt], n, params, deadline)[0]

        return self._draw(draw, request.n, request.parameters, Task.HEADLINE, request.unique, deadline)

    def articles(self, request: ArticleRequest, deadline: float | None = None) -> GenerationResponse:
        def draw(n: int, params: GenerationParameters, deadline: float | None) -> GenerationResponse:
            return self.articles_many([request.headline], n, params, deadline)[0]

        return self._draw(draw, request.n, request.parameters, Task.ARTICLE, request.unique, deadline)

    def news(self, request: NewsRequest, deadline: float | None = None) -> NewsResponse:
        def draw(n: int, params: GenerationParameters, deadline: float | None) -> NewsResponse:
            return self.news_many([request.prompt], n, params, request.article_parameters, deadline)[0]

        return self._draw(draw, request.n, request.headline_parameters, Task.HEADLINE, request.unique, deadline)

    def _draw(
        self,
        draw: Callable[[int, GenerationParameters, float | None], Drawn],
        n: int,
        params: GenerationParameters,
        task: Task,
        unique: bool,
        deadline: float | None,
    ) -> Drawn:
        """n results; with `unique`, the results that repeat an earlier one are drawn again with the next seeds
        (so that one seed still reproduces the whole response), up to MAX_UNIQUE_REDRAWS rounds while time is
        left. A redraw cut short by the time budget is not taken. The distinct results come first and the
        response counts them."""
        if not unique:
            return draw(n, params, deadline)
        if deadline is None:  # one budget for every draw
            deadline = time.monotonic() + self.settings.default_time_budget_ms / 1000
        response = draw(n, params, deadline)
        seed = response.provenance.parameters[str(task)].get("seed")  # present only where sampled
        drawn: Sequence[Result] = response.results
        distinct: list[Result] = _distinct(drawn)
        for redraw in range(1, MAX_UNIQUE_REDRAWS + 1):
            if seed is None or len(distinct) == n or self._budget(deadline) <= MIN_REDRAW_SECONDS:
                break
            again: Sequence[Result] = draw(
                n - len(distinct), params.model_copy(update={"seed": (seed + redraw) % 2**32}), deadline
            ).results
            distinct = _distinct([*distinct, *(r for r in again if not _cut_short(r))])
        repeats: list[Result] = [r for r in drawn if not any(r is d for d in distinct)][: n - len(distinct)]
        return response.model_copy(update={"results": [*distinct, *repeats], "unique": len(distinct)})

    def headlines_many(
        self, prompts: list[str | None], n: int, params: GenerationParameters, deadline: float | None = None
    ) -> list[GenerationResponse]:
        prefixes = [p or "" for p in prompts]
        return self._generate(Task.HEADLINE, prefixes, prefixes, n, params, deadline)

    def articles_many(
        self, headlines: list[str], n: int, params: GenerationParameters, deadline: float | None = None
    ) -> list[GenerationResponse]:
        return self._generate(Task.ARTICLE, headlines, [""] * len(headlines), n, params, deadline)

    def _generate(
        self,
        task: Task,
        inputs: list[str],
        prefixes: list[str],
        n: int,
        params: GenerationParameters,
        deadline: float | None,
    ) -> list[GenerationResponse]:
        """One model's texts for several inputs (headline prefixes, or headlines), in one generate call, each
        result after its prefix."""
        loaded = self.model(task)
        _check_budget([("", _demand(loaded, n, params))])
        mark, info = self.watermark_for(loaded)
        out = generation.generate(
            loaded,
            prompt.prompts_for(loaded.task, inputs, loaded.manifest.prompt_format),
            n=n,
            params=params,
            time_budget_s=self._budget(deadline),
            watermark=mark,
        )
        refs = [ModelRef(task=task, version=loaded.version)]
        provenance = _provenance(refs, {task: out}, out.seed, info)
        return [
            GenerationResponse(results=[_with_prefix(p, r) for r in rows], model=refs, provenance=provenance)
            for p, rows in zip(prefixes, out.results, strict=False)
        ]

    def news_many(
        self,
        prompts: list[str | None],
        n: int,
        headline_params: GenerationParameters,
        article_params: GenerationParameters,
        deadline: float | None = None,
    ) -> list[NewsResponse]:
        """n headlines per prompt, then one article for each headline, all articles in one generate call;
        each part decoded with its own parameters over its own model's defaults."""
        headline_model, article_model = self.model(Task.HEADLINE), self.model(Task.ARTICLE)
        _check_budget(
            [
                ("headlines: ", _demand(headline_model, n, headline_params)),
                ("articles: ", _demand(article_model, 1, article_params, prompts=n)),
            ]
        )
        prefixes = [p or "" for p in prompts]
        _check_news_context(headline_model, article_model, prefixes, headline_params, article_params)
        if headline_params.seed is None and (headline_params.num_beams or 1) == 1:
            # Drawn here rather than by generate, so that the article part can share it.
            headline_params = headline_params.model_copy(update={"seed": secrets.randbelow(2**31)})
        if article_params.seed is None and (article_params.num_beams or 1) == 1:
            # One seed reproduces the whole item: the article part uses the headline part's.
            article_params = article_params.model_copy(update={"seed": headline_params.seed})
        mark, info = self.watermark_for(headline_model)
        heads = generation.generate(
            headline_model,
            prompt.prompts_for(Task.HEADLINE, prefixes, headline_model.manifest.prompt_format),
            n=n,
            params=headline_params,
            time_budget_s=self._budget(deadline, share=0.3),
            watermark=mark,
        )
        headlines = [_with_prefix(p, r) for p, rows in zip(prefixes, heads.results, strict=False) for r in rows]
        bodies = generation.generate(
            article_model,
            prompt.prompts_for(Task.ARTICLE, [h.text for h in headlines], article_model.manifest.prompt_format),
            n=1,
            params=article_params,
            time_budget_s=self._budget(deadline),
            watermark=self.watermark_for(article_model)[0],
        )
        items = [
            NewsItem(headline=h, article=_with_prefix("", b[0]))
            for h, b in zip(headlines, bodies.results, strict=False)
        ]
        refs = [
            ModelRef(task=Task.HEADLINE, version=headline_model.version),
            ModelRef(task=Task.ARTICLE, version=article_model.version),
        ]
        seed = heads.seed if article_params.seed in (None, heads.seed) else None
        provenance = _provenance(refs, {Task.HEADLINE: heads, Task.ARTICLE: bodies}, seed, info)
        return [
            NewsResponse(results=items[i * n : (i + 1) * n], model=refs, provenance=provenance)
            for i in range(len(prompts))
        ]

    # --- watermark ------------------------------------------------------------------------------------
    def keyring(self) -> watermark.Keyring:
        """Read once per container (Secrets Manager, SSM or a local file); a failure is retried by the next request."""
        with self._watermark_lock:
            if self._keyring is None:
                self._keyring = watermark.load_keyring(
                    self.settings.watermark_keys_parameter,
                    self.settings.watermark_keys_file,
                    secret=self.settings.watermark_keys_secret,
                )
            return self._keyring

    def watermark_for(self, loaded: LoadedModel) -> tuple[watermark.GreenlistWatermark | None, WatermarkInfo | None]:
        """The processor that marks this model's texts, and what the provenance says of it. With the
        watermark on, a keyring that cannot be read stops generation (503) rather than let unmarked text out."""
        if not self.settings.watermark:
            return None, None
        ring = self.keyring()
        vocab_size = int(loaded.model.config.vocab_size)
        with self._watermark_lock:
            if vocab_size not in self._watermarks:
                self._watermarks[vocab_size] = watermark.GreenlistWatermark(
                    vocab_size, ring.current_key(), self.settings.watermark_bias
                )
        return self._watermarks[vocab_size], WatermarkInfo(scheme=watermark.SCHEME, key_id=ring.current)

    def detect(self, texts: list[str]) -> list[DetectionResult]:
        """Watermark detection with every key of the keyring (old keys too), scoring the tokens where the article
        model had a real choice."""
        loaded = self.model(Task.ARTICLE)
        key = int(loaded.model.config.vocab_size)
        with self._watermark_lock:
            detector = self._detectors.get(key)
        if detector is None:
            detector = watermark.Detector(self.keyring(), key)
            with self._watermark_lock:
                self._detectors[key] = detector
        results = []
        for text in texts:
            ids, text_start = prompt.as_written(loaded.tokenizer, text, loaded.manifest.prompt_format)
            choices = watermark.choices(generation.token_logits(loaded, ids))
            results.append(DetectionResult(**vars(detector.detect(ids, choices, text_start))))
        return results

    def detect_response(self, texts: list[str]) -> DetectResponse:
        return DetectResponse(
            results=self.detect(texts),
            scheme=watermark.SCHEME,
            threshold=watermark.Z_THRESHOLD,
            min_tokens=watermark.MIN_TOKENS,
        )

    def models(self) -> list[ModelInfo]:
        """The versions this container resolves, with their manifests' metrics."""
        out = []
        for task in Task:
            loaded = self.model(task)
            manifest = loaded.manifest
            out.append(
                ModelInfo(
                    task=task,
                    version=loaded.version,
                    base_model=manifest.base_model,
                    export=manifest.export,
                    created_at=manifest.created_at,
                    metrics=manifest.metrics,
                    data_fingerprint=manifest.data_fingerprint,
                    context_length=loaded.context_length,
                )
            )
        return out

    def _budget(self, deadline: float | None, share: float = 1.0) -> float:
        """Seconds that generation may use: up to the deadline (monotonic clock) less the margin."""
        margin = self.settings.time_margin_ms / 1000
        if deadline is None:
            deadline = time.monotonic() + self.settings.default_time_budget_ms / 1000
        return max(0.05, (deadline - time.monotonic() - margin) * share)


def _demand(loaded: LoadedModel, n: int, params: GenerationParameters, prompts: int = 1) -> tuple[int, str]:
    """The tokens one request's generate call may compute, and how: every sequence runs to the effective
    max_new_tokens (the request's, else the model's default), and a beam search of width b computes b
    sequences per prompt however few it returns."""
    decoding = generation.effective_parameters(loaded, params)
    beams, max_new = decoding["num_beams"], decoding["max_new_tokens"]
    rows = prompts * max(n, beams)
    how = f"n={rows}" if beams == 1 else f"{prompts} × {beams} beams" if prompts > 1 else f"{beams} beams"
    source = ", the model's default" if params.max_new_tokens is None else ""
    return rows * max_new, f"{how} × max_new_tokens {max_new}{source}"


def _check_budget(parts: list[tuple[str, tuple[int, str]]]) -> None:
    """Refuse, before generating, a request that may compute more than MAX_TOTAL_NEW_TOKENS tokens."""
    total = sum(tokens for _, (tokens, _) in parts)
    if total > MAX_TOTAL_NEW_TOKENS:
        how = "; ".join(label + text for label, (_, text) in parts)
        raise InvalidRequest(
            f"this request may generate {total} tokens ({how}), over the per-request budget of "
            f"{MAX_TOTAL_NEW_TOKENS}: lower n, num_beams or max_new_tokens",
            tokens=total,
            budget=MAX_TOTAL_NEW_TOKENS,
        )


def _check_news_context(
    headline_model: LoadedModel,
    article_model: LoadedModel,
    prefixes: list[str],
    headline_params: GenerationParameters,
    article_params: GenerationParameters,
) -> None:
    """Each article's prompt is its headline: refuse up front, rather than after generating the headlines, a
    request whose longest possible headline leaves no room in the article model's context."""
    headline_tokens = generation.effective_parameters(headline_model, headline_params)["max_new_tokens"]
    article_tokens = generation.effective_parameters(article_model, article_params)["max_new_tokens"]
    tokenizer = headline_model.tokenizer
    prefix = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prefixes)
    article_prompt = prefix + headline_tokens + 2  # the headline between bos and the separator
    if article_prompt + article_tokens > article_model.context_length:
        raise InvalidRequest(
            f"a headline of up to {prefix + headline_tokens} tokens (prompt {prefix} + max_new_tokens "
            f"{headline_tokens}) + max_new_tokens {article_tokens} for its article exceeds the article model's "
            f"context of {article_model.context_length} tokens: shorten the prompt or lower the max_new_tokens "
            "of headline_parameters or article_parameters",
            prompt_tokens=prefix,
            context_length=article_model.context_length,
        )


def _parts(result: Result) -> list[GeneratedText]:
    return [result.headline, result.article] if isinstance(result, NewsItem) else [result]


def _cut_short(result: Result) -> bool:
    return any(part.finish_reason == "time" for part in _parts(result))


def _distinct(results: Sequence[Result]) -> list[Result]:
    """The results whose text (a news item's headline) no earlier one has, in order."""
    seen: dict[str, Result] = {}
    for result in results:
        seen.setdefault(_parts(result)[0].text, result)
    return list(seen.values())


def _with_prefix(prefix: str, result: GeneratedText) -> GeneratedText:
    return result.model_copy(update={"text": (prefix + result.text).strip()})


def _provenance(
    models: list[ModelRef], parts: dict[Task, generation.Generation], seed: int | None, mark: WatermarkInfo | None
) -> Provenance:
    return Provenance(
        models=models,
        parameters={str(task): out.effective() for task, out in parts.items()},
        seed=seed,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        watermark=mark,
    )
