"""API Gateway (REST, proxy integration) entry point: parse → newsgen.service → response.

Routes: POST /v1/headlines, POST /v1/articles, POST /v1/news, GET /v1/models, GET /health.
Every error is JSON {error, error_type, ...}; none carries a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.utilities.typing import LambdaContext

from newsgen.errors import NewsgenError
from newsgen.schemas import ArticleRequest, GenerationResponse, HeadlineRequest, NewsRequest, NewsResponse
from newsgen.service import NewsService
from newsgen.settings import load_settings

settings = load_settings()
logger = Logger(service="newsgen-api")
app = APIGatewayRestResolver(enable_validation=True)
service = NewsService(settings)
if settings.preload_models:
    # Loading in the init phase uses its full-CPU burst; a failure here leaves the requests to answer 503
    # and to try again, instead of crashing the runtime.
    try:
        service.preload()
    except NewsgenError as exc:
        logger.error("preload failed", extra={"error_type": exc.error_type, "error": exc.message})


def error(status: int, message: str, error_type: str, **extra) -> Response:
    body = {"error": message, "error_type": error_type, **extra}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def deadline() -> float | None:
    """The monotonic time by which this invocation must have answered."""
    context = app.lambda_context
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return time.monotonic() + context.get_remaining_time_in_millis() / 1000


@app.post("/v1/headlines")
def headlines(request: Annotated[HeadlineRequest, Body()]) -> GenerationResponse:
    return service.headlines(request, deadline())


@app.post("/v1/articles")
def articles(request: Annotated[ArticleRequest, Body()]) -> GenerationResponse:
    return service.articles(request, deadline())


@app.post("/v1/news")
def news(request: Annotated[NewsRequest, Body()]) -> NewsResponse:
    return service.news(request, deadline())


@app.get("/v1/models")
def models() -> dict:
    return {"models": service.models()}


@app.get("/health")
def health() -> dict:
    return {"status": "ok", "models_loaded": [f"{m.task}:{m.version}" for m in service.store.loaded()]}


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    details = [
        # The offending input is left out: it may be a prompt, and NaN would not survive JSON.
        {"loc": [str(part) for part in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"][1:]) or "body"
    return error(400, f"{where}: {first['msg']}", "validation_error", details=details)


@app.exception_handler(NewsgenError)
def newsgen_error(exc: NewsgenError) -> Response:
    logger.warning("request failed", extra={"error_type": exc.error_type, "error": exc.message})
    return error(exc.status_code, exc.message, exc.error_type, **({"details": exc.details} if exc.details else {}))


@app.not_found
def not_found(exc: NotFoundError) -> Response:
    return error(404, f"no route {app.current_event.http_method} {app.current_event.path}", "not_found")


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return error(500, "internal error; the request id is in the logs", "internal_error")


def as_json_request(event: dict) -> dict:
    """Bodies are JSON whatever the Content-Type: `curl -d` labels JSON as a web form."""
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    content_type = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "content-type"), "")
    if not content_type or content_type.startswith("application/x-www-form-urlencoded"):
        content_type = content_types.APPLICATION_JSON
    headers["Content-Type"] = content_type
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    multi["Content-Type"] = [content_type]
    return {**event, "headers": headers, "multiValueHeaders": multi}


def unreadable_body(event: dict) -> dict | None:
    """413 over the size limit; 400 for a body that is not UTF-8 text (API Gateway passes it base64)."""
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8", "surrogatepass"))
    if size > settings.max_body_bytes:
        message = f"request body of {size} bytes is over the limit of {settings.max_body_bytes}"
        return proxy_error(413, message, "payload_too_large")
    if event.get("isBase64Encoded") and body:
        try:
            base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return proxy_error(400, "request body is not UTF-8 JSON", "validation_error")
    return None


def proxy_error(status: int, message: str, error_type: str) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps({"error": message, "error_type": error_type}),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return unreadable_body(event) or app.resolve(as_json_request(event), context)
