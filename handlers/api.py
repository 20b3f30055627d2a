"""API Gateway (REST, proxy integration) entry point: parse → newsgen.service → response.

Routes: POST /v1/headlines, /v1/articles, /v1/news, /v1/detect; POST /v1/completions (OpenAI's legacy
completions API, newsgen.completions); GET /v1/models, /health; the OpenAPI spec at /openapi.json, Swagger UI at
/docs and the playground page at / (handlers/playground/). Every error is JSON {error, error_type, ...} — on
/v1/completions OpenAI's {error: {message, type, param, code}} — and none carries a trace.
"""

import base64
import binascii
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

import newsgen
from handlers.runtime import create_service
from newsgen import completions, errors
from newsgen.completions import CompletionRequest, CompletionResponse, OpenAIErrorResponse
from newsgen.errors import NewsgenError
from newsgen.schemas import (
    MAX_JSON_DEPTH,
    ArticleRequest,
    DetectRequest,
    DetectResponse,
    ErrorResponse,
    GenerationResponse,
    HealthResponse,
    ModelsResponse,
    NewsRequest,
    NewsResponse,
    PromptRequest,
    json_nesting_exceeds,
    model_id,
)
from newsgen.settings import load_settings
from newsgen.store import LoadedModel

settings = load_settings()
logger = Logger(service="newsgen-api")
metrics = Metrics(namespace="newsgen", service="api")
# Every capture passes capture_response=False and capture_error=False: responses hold generated text and an
# error may quote a request, and neither belongs in a trace (tests/test_security.py checks each decorator).
tracer = Tracer(service="newsgen-api")
app = APIGatewayRestResolver(enable_validation=True)
OPENAPI: dict[str, Any] = {
    "title": "newsgen",
    "version": newsgen.__version__,
    "description": "Generates synthetic news headlines and article openings with fine-tuned GPT-2 models. "
    "Every output is machine-generated and labelled so.",
}
app.configure_openapi(**OPENAPI)
app.enable_swagger(path="/docs", **OPENAPI)

ERRORS: dict[int, OpenAPIResponse] = {
    400: {"description": "Invalid request", "content": {"application/json": {"model": ErrorResponse}}},
    413: {"description": "Body over the size limit", "content": {"application/json": {"model": ErrorResponse}}},
    503: {
        "description": "Model unavailable; retry (after Retry-After seconds when the header is set)",
        "content": {"application/json": {"model": ErrorResponse}},
    },
}


def documented(model: type, description: str = "Generated texts, labelled synthetic") -> dict[int, OpenAPIResponse]:
    return {200: {"description": description, "content": {"application/json": {"model": model}}}, **ERRORS}


# Routes that answer errors in OpenAI's shape, for OpenAI's clients to read.
OPENAI_ROUTES = frozenset({"/v1/completions"})
OPENAI_ERRORS: dict[int, OpenAPIResponse] = {
    status: {
        "description": description,
        "content": {"application/json": {"model": OpenAIErrorResponse}},
    }
    for status, description in (
        (400, "Invalid or unsupported request (error.param names the field)"),
        (404, "No such model, or not the version served (code model_not_found)"),
        (413, "Body over the size limit"),
        (503, "Model unavailable; retry (after Retry-After seconds when the header is set)"),
    )
}


# API Gateway (REST) stops waiting for a Lambda integration 29 s after it received the request and answers
# 504, whatever the function's own timeout (the template's Timeout stays under it).
GATEWAY_TIMEOUT_S = 29.0
Generated = TypeVar("Generated", GenerationResponse, NewsResponse, CompletionResponse)


def record_load(loaded: LoadedModel) -> None:
    for name, seconds in loaded.timings.items():
        metrics.add_metric(name=f"model_{name}", unit=MetricUnit.Seconds, value=seconds)


service = create_service(settings, on_model_loaded=record_load)


def deadline(event: dict, context: Any) -> float | None:
    """The monotonic time by which this invocation must have answered: the Lambda's own deadline, or API
    Gateway's if that comes first. The gateway's clock starts when it received the request (requestTimeEpoch,
    ms since the epoch), so a cold start's init has already used part of it."""
    seconds_left = []
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        seconds_left.append(context.get_remaining_time_in_millis() / 1000)
    received_ms = (event.get("requestContext") or {}).get("requestTimeEpoch")
    if isinstance(received_ms, (int, float)) and not isinstance(received_ms, bool):
        seconds_left.append(received_ms / 1000 + GATEWAY_TIMEOUT_S - time.time())
    return time.monotonic() + min(seconds_left) if seconds_left else None


def observe(route: str, request: Any, run: Callable[[Any, float | None], Generated]) -> Generated:
    """Run a generation, with its metrics and (only when LOG_PROMPTS=true) its prompt in the log."""
    if settings.log_prompts:
        logger.info("request", extra={"route": route, "request": request.model_dump()})
    started = time.perf_counter()
    response = run(request, deadline(app.current_event.raw_event, app.lambda_context))
    elapsed = time.perf_counter() - started
    tokens = response.generated_tokens()
    metrics.add_metric(name="generated_tokens", unit=MetricUnit.Count, value=tokens)
    metrics.add_metric(name="tokens_per_second", unit=MetricUnit.CountPerSecond, value=tokens / max(elapsed, 1e-6))
    logger.info("generated", extra={"route": route, "n": request.n, "tokens": tokens, "seconds": round(elapsed, 3)})
    return response


@app.post("/v1/headlines", summary="Generate headlines", responses=documented(GenerationResponse))
@tracer.capture_method(capture_response=False, capture_error=False)
def headlines(request: Annotated[PromptRequest, Body()]) -> GenerationResponse:
    return observe("headlines", request, service.headlines)


@app.post("/v1/articles", summary="Generate article openings for a headline", responses=documented(GenerationResponse))
@tracer.capture_method(capture_response=False, capture_error=False)
def articles(request: Annotated[ArticleRequest, Body()]) -> GenerationResponse:
    return observe("articles", request, service.articles)


@app.post("/v1/news", summary="Generate headline + article pairs", responses=documented(NewsResponse))
@tracer.capture_method(capture_response=False, capture_error=False)
def news(request: Annotated[NewsRequest, Body()]) -> NewsResponse:
    return observe("news", request, service.news)


@app.post(
    "/v1/completions",
    summary="OpenAI-compatible text completions (headline or article)",
    description="OpenAI's legacy completions API, for OpenAI's clients: `model` is `headline` or `article` "
    "(or `task:version`), `prompt` how a headline starts or the headline to write under. Unset sampling fields "
    "take the model's defaults; `temperature: 0` is greedy; `logprobs` gives the chosen tokens' logprobs. "
    "Parameters without an equivalent here are accepted at their defaults only. Errors are OpenAI's "
    "`{error: {message, type, param, code}}`.",
    responses={
        200: {
            "description": "Completions, labelled synthetic",
            "content": {"application/json": {"model": CompletionResponse}},
        },
        **OPENAI_ERRORS,
    },
)
@tracer.capture_method(capture_response=False, capture_error=False)
def completion(request: Annotated[CompletionRequest, Body()]) -> CompletionResponse:
    return observe("completions", request, functools.partial(completions.complete, service))


@app.post(
    "/v1/detect",
    summary="Check texts for newsgen's watermark",
    description="Judges each text on its own: watermarked (generated by this deployment, under any of its "
    "keys, old ones included), not_watermarked, too_short, or too_predictable to judge (the model had too few "
    "real choices in it to carry the mark). Only the tokens where the article model had a choice are scored. "
    "An article is best checked with its headline as the first line: the context it was written in.",
    responses=documented(DetectResponse, "One verdict per text"),
)
@tracer.capture_method(capture_response=False, capture_error=False)
def detect(request: Annotated[DetectRequest, Body()]) -> DetectResponse:
    response = service.detect_response(request.all_texts())
    metrics.add_metric(name="texts_checked", unit=MetricUnit.Count, value=len(response.results))
    return response


@app.get(
    "/v1/models", summary="The model versions this deployment serves", responses=documented(ModelsResponse, "Models")
)
def models() -> ModelsResponse:
    return ModelsResponse.of(service.models())


@app.get("/health", summary="Liveness and the loaded model versions")
def health() -> HealthResponse:
    return HealthResponse(models_loaded=[model_id(m.task, m.version) for m in service.loaded_models()])


def request_id(event: dict | None, context: Any) -> str | None:
    """API Gateway's id for the request (its caller gets it as the x-amzn-RequestId header), else the Lambda's.
    Every log line carries it (correlation_id), so an error body can point at the log without quoting it."""
    return ((event or {}).get("requestContext") or {}).get("requestId") or getattr(context, "aws_request_id", None)


def error_body(
    status: int,
    message: str,
    error_type: str,
    rid: str | None,
    path: str | None,
    *,
    param: str | None = None,
    details: list | dict | None = None,
) -> str:
    """Our {error, error_type, details?, request_id}, or OpenAI's {error: {message, type, param, code}} on
    OPENAI_ROUTES (`param`: the field at fault, which our shape tells in `details`)."""
    metrics.add_metric(name=f"errors_{error_type}", unit=MetricUnit.Count, value=1)
    if path in OPENAI_ROUTES:
        return json.dumps(completions.error_body(status, message, error_type, param))
    extra = {"details": details} if details else {}
    return json.dumps(errors.error_body(message, error_type, **extra, request_id=rid))


def error(
    status: int,
    message: str,
    error_type: str,
    headers: dict | None = None,
    *,
    param: str | None = None,
    details: list | dict | None = None,
) -> Response:
    event = app.current_event
    rid = request_id(event.raw_event, app.lambda_context)
    body = error_body(status, message, error_type, rid, event.path, param=param, details=details)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    problems = exc.errors()
    if problems and problems[0].get("type") == "json_invalid":  # powertools' parse: (body, position), the text
        syntax = json.JSONDecodeError(problems[0]["ctx"]["error"], exc.body or "", problems[0]["loc"][1])
        return error(400, errors.not_json("body", syntax), "validation_error")
    details = errors.validation_problems(problems)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    # loc[0] is "body", loc[1] the field.
    param = first["loc"][1] if len(first["loc"]) > 1 else None
    return error(400, errors.problem_text(first, "body", skip=1), "validation_error", param=param, details=details)


# What a 5xx body may say of the failure beyond its summary: its kind, the task and when to retry, never its
# text.
PUBLIC_DETAILS = ("cause", "task", "retry_after_s")


@app.exception_handler(NewsgenError)
def newsgen_error(exc: NewsgenError) -> Response:
    rid = request_id(app.current_event.raw_event, app.lambda_context)
    server_fault = exc.status_code >= 500
    log = logger.error if server_fault else logger.warning
    log(
        "request failed",
        extra={"error_type": exc.error_type, "error": exc.message, "details": exc.details, "request_id": rid},
    )
    if not server_fault:  # the message is about the caller's request
        details = {k: v for k, v in exc.details.items() if k != "param"}
        return error(exc.status_code, exc.message, exc.error_type, param=exc.details.get("param"), details=details)
    message, details = public_failure(exc, rid)
    retry_after = details.get("retry_after_s")
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return error(exc.status_code, message, exc.error_type, headers=headers, details=details)


def public_failure(exc: NewsgenError, rid: str | None) -> tuple[str, dict]:
    """What a caller is told of a failure of ours: what failed, when to retry, and the id to quote."""
    details = {k: v for k, v in exc.details.items() if k in PUBLIC_DETAILS}
    cause = f" ({details['cause']})" if "cause" in details else ""
    when = f"in {details['retry_after_s']} s" if details.get("retry_after_s") else "in a moment"
    return f"{exc.public_message()}{cause}; retry {when}, and quote request id {rid} if it persists", details


# --- the playground: one static page for people, served by this function (no CDN, no build step) ----------
PLAYGROUND = Path(__file__).with_name("playground")
# path → (file, content type). The page names its files relatively (playground/app.js), so that it works under
# a stage prefix (/prod/) as well as at the root of `make run`.
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/playground/style.css": ("style.css", "text/css; charset=utf-8"),
}
OPENAPI_PATH = "/openapi.json"
# The GETs a browser makes before it can send an API key (a navigation cannot): template.yaml opens exactly
# these paths in every ApiAuthMode (tests/infra/test_template.py compares). They generate nothing.
PUBLIC_PATHS = (*PAGE_FILES, OPENAPI_PATH)
# No inline script or style, nothing from elsewhere, no framing; Trusted Types make any HTML sink (innerHTML …)
# an error, so generated text can only reach the page as text.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def static_file(path: str, name: str, content_type: str) -> None:
    body = (PLAYGROUND / name).read_text(encoding="utf-8")  # at init: an image without its page fails at once

    def serve():  # no return annotation: validation would try to make a pydantic model of Response
        gateway_path = (app.current_event.raw_event.get("requestContext") or {}).get("path") or ""
        if path == "/" and gateway_path and not gateway_path.endswith("/"):
            # https://…/prod must become …/prod/, or the page's relative URLs would miss the stage.
            return Response(status_code=308, headers={"Location": gateway_path + "/"}, body="")
        return Response(status_code=200, content_type=content_type, body=body, headers=PAGE_SECURITY_HEADERS)

    serve.__name__ = f"page_{name.replace('.', '_')}"
    app.get(path, include_in_schema=False)(serve)


for _path, (_name, _type) in PAGE_FILES.items():
    static_file(_path, _name, _type)


@app.get(OPENAPI_PATH, include_in_schema=False)
def openapi_spec():
    """The spec, for tools and for the playground, which reads the API's limits from it."""
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())


@functools.cache
def openapi_json() -> str:
    return app.get_openapi_json_schema()


@functools.cache
def route_methods() -> dict[str, str]:
    """path → the methods the routes above answer on it: the route table is the decorators (and the pages,
    which the spec leaves out)."""
    methods = ("get", "put", "post", "delete", "patch")
    paths = app.get_openapi_schema().paths or {}
    table = {path: ", ".join(m.upper() for m in methods if getattr(item, m, None)) for path, item in paths.items()}
    return {**table, **dict.fromkeys(PUBLIC_PATHS, "GET")}


@app.not_found
def not_found(exc: NotFoundError) -> Response:
    method, path = app.current_event.http_method, app.current_event.path
    if allowed := route_methods().get(path):
        return error(405, f"{method} is not allowed on {path}; use {allowed}", "method_not_allowed", {"Allow": allowed})
    return error(404, f"no route {method} {path}", "not_found")


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    rid = request_id(app.current_event.raw_event, app.lambda_context)
    logger.exception("unexpected error", extra={"request_id": rid})
    return error(500, f"internal error; retry, and quote request id {rid} if it persists", "internal_error")


def as_json_request(event: dict) -> dict:
    """Bodies are read as JSON whatever the Content-Type says: `curl -d` labels JSON as a web form, and a
    body that is not JSON gets a 400 from validation either way."""
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = content_types.APPLICATION_JSON
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    multi["Content-Type"] = [content_types.APPLICATION_JSON]
    return {**event, "headers": headers, "multiValueHeaders": multi}


def unreadable_body(event: dict, rid: str | None = None) -> dict | None:
    """413 over the size limit; 400 for a body that is not UTF-8 text (API Gateway passes it base64) or that
    nests deeper than any request does (the JSON parser would hit Python's recursion limit)."""
    body = text = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8", "surrogatepass"))
    if size > settings.max_body_bytes:
        return proxy_error(
            413,
            f"request body of {size} bytes is over the limit of {settings.max_body_bytes}",
            "payload_too_large",
            rid,
            event.get("path"),
        )
    if event.get("isBase64Encoded") and body:
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return proxy_error(400, "request body is not UTF-8 JSON", "validation_error", rid, event.get("path"))
    if json_nesting_exceeds(text):
        return proxy_error(
            400,
            f"request body is nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays and objects",
            "validation_error",
            rid,
            event.get("path"),
        )
    return None


def proxy_error(status: int, message: str, error_type: str, rid: str | None, path: str | None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": error_body(status, message, error_type, rid, path),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(log_event=False, clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return unreadable_body(event, request_id(event, context)) or app.resolve(as_json_request(event), context)
