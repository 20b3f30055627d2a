"""`make smoke URL=… KEY=…`: every route of a deployed API once (or of `make run`'s, URL=http://127.0.0.1:3000),
each answer's status and shape checked. Prints one line per route, FAIL lines for what is wrong, and exits 1 if
anything is. The standard library only: it runs wherever Python 3.11 does, without the project's venv.

    python -m infra.smoke https://<api>.execute-api.<region>.amazonaws.com/prod --key <x-api-key>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 60  # a cold start loads both models inside the first request (API Gateway stops at 29 s)
SHORT = {"max_new_tokens": 24, "seed": 7}  # small answers: the smoke test checks shapes, not text

# Answer shapes: a type (bool is not taken for int), a literal, a tuple of alternatives, a dict of required keys
# (more are allowed) or a one-item list: a non-empty list of such items.
NUMBER = (int, float)
TEXT = {"text": str, "finish_reason": ("eos_token", "length", "stop_sequence", "time"), "generated_tokens": int}
MODELS = [{"task": str, "version": str}]
PROVENANCE = {
    "synthetic": True,
    "notice": str,
    "models": MODELS,
    "seed": (int, None),
    "created_at": str,
    "watermark": ({"scheme": str, "key_id": str, "detect": str}, None),
}
GENERATED = {"results": [TEXT], "model": MODELS, "synthetic": True, "provenance": PROVENANCE}
SHAPES: dict[str, Any] = {
    "/health": {"status": "ok", "models_loaded": list},
    "/v1/models": {
        "models": [{"task": str, "version": str, "base_model": str, "export": str, "context_length": int}],
        "object": "list",
        "data": [{"id": str, "object": "model", "created": int, "owned_by": str}],
    },
    "/v1/headlines": GENERATED,
    "/v1/articles": GENERATED,
    "/v1/news": {**GENERATED, "results": [{"headline": TEXT, "article": TEXT}]},
    "/v1/completions": {
        "id": str,
        "object": "text_completion",
        "created": int,
        "model": str,
        "choices": [{"text": str, "index": int, "finish_reason": ("stop", "length"), "logprobs": None}],
        "usage": {"prompt_tokens": int, "completion_tokens": int, "total_tokens": int},
        "synthetic": True,
        "provenance": PROVENANCE,
    },
    "/v1/detect": {
        "results": [
            {
                "watermarked": (bool, None),
                "verdict": ("watermarked", "not_watermarked", "too_short"),
                "score": (*NUMBER, None),
                "p_value": (*NUMBER, None),
                "tokens_scored": int,
                "key_id": (str, None),
            }
        ],
        "scheme": str,
        "threshold": NUMBER,
        "min_tokens": int,
    },
    "/openapi.json": {"openapi": str, "paths": dict},
}
# The playground: the page and the two files it loads, by content type and a piece every version has.
PAGES = {
    "/": ("text/html", "<html"),
    "/playground/app.js": ("text/javascript", "fetch("),
    "/playground/style.css": ("text/css", "{"),
}


def mismatches(value: Any, shape: Any, where: str = "") -> list[str]:
    """Where `value` differs from `shape` (see SHAPES), as `path: what` lines."""
    if isinstance(shape, tuple):
        if any(not mismatches(value, option, where) for option in shape):
            return []
        return [f"{where or 'body'}: {short(value)} is none of {describe(shape)}"]
    if isinstance(shape, type):
        if isinstance(value, shape) and not (isinstance(value, bool) and shape is not bool):
            return []
        return [f"{where or 'body'}: {short(value)} is not {shape.__name__}"]
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where or 'body'}: {short(value)} is not an object"]
        inside = {key: f"{where}.{key}" if where else key for key in shape}
        return [
            problem
            for key, inner in shape.items()
            for problem in (mismatches(value[key], inner, inside[key]) if key in value else [f"{inside[key]}: missing"])
        ]
    if isinstance(shape, list):
        if not isinstance(value, list) or not value:
            return [f"{where or 'body'}: {short(value)} is not a non-empty list"]
        return [problem for i, item in enumerate(value) for problem in mismatches(item, shape[0], f"{where}[{i}]")]
    if value != shape or type(value) is not type(shape):
        return [f"{where or 'body'}: {short(value)} is not {shape!r}"]
    return []


def describe(shape: tuple) -> str:
    return "/".join(s.__name__ if isinstance(s, type) else "object" if isinstance(s, dict) else repr(s) for s in shape)


def short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Smoke:
    url: str
    key: str | None = None
    failures: int = 0

    def call(self, method: str, path: str, body: dict | None = None) -> Answer:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.key:
            headers["x-api-key"] = self.key
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return Answer(response.status, response.headers.get("Content-Type", ""), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.headers.get("Content-Type", ""), error.read())

    def check(
        self, method: str, path: str, body: dict | None = None, *, expect: Callable[[Answer], list[str]]
    ) -> Answer | None:
        """One route: a line `ok`, or a FAIL line per problem. The answer, if it had none."""
        started = time.perf_counter()
        answer: Answer | None = None
        try:
            answer = self.call(method, path, body)
            problems = expect(answer)
        except (OSError, ValueError) as exc:  # unreachable, timed out, not JSON
            problems = [f"{type(exc).__name__}: {exc}"]
        lines = [f"FAIL  {method} {path}: {problem}" for problem in problems]
        print("\n".join(lines or [f"ok    {method} {path} ({time.perf_counter() - started:.1f} s)"]), flush=True)
        self.failures += len(problems)
        return None if problems else answer

    def json_route(self, method: str, path: str, body: dict | None = None) -> Any:
        """A JSON route; its parsed answer if it had the route's shape, else None."""
        answer = self.check(method, path, body, expect=lambda answer: json_problems(answer, path))
        return answer.json() if answer else None

    def page(self, path: str) -> None:
        self.check("GET", path, expect=lambda answer: page_problems(answer, *PAGES[path]))


def status_problem(answer: Answer) -> list[str]:
    if answer.status == 200:
        return []
    hint = " (the API wants an API key: KEY=…, the ApiKeyCommand output)" if answer.status == 403 else ""
    return [f"status {answer.status}{hint}: {answer.body[:200].decode(errors='replace')}"]


def json_problems(answer: Answer, path: str) -> list[str]:
    return status_problem(answer) or mismatches(answer.json(), SHAPES[path])


def page_problems(answer: Answer, content_type: str, piece: str) -> list[str]:
    if problem := status_problem(answer):
        return problem
    problems = [] if answer.content_type.startswith(content_type) else [f"content type {answer.content_type!r}"]
    return problems + ([] if piece in answer.body.decode(errors="replace") else [f"no {piece!r} in the body"])


def run(url: str, key: str | None = None) -> int:
    """Every route once; later calls use what earlier ones generated. The number of failures."""
    smoke = Smoke(url, key)
    smoke.json_route("GET", "/health")
    smoke.json_route("GET", "/v1/models")
    headlines = smoke.json_route("POST", "/v1/headlines", {"n": 1, "parameters": SHORT})
    headline = headlines["results"][0]["text"].strip() if headlines else ""
    smoke.json_route("POST", "/v1/articles", {"headline": headline or "Council approves budget", "parameters": SHORT})
    news = smoke.json_route("POST", "/v1/news", {"n": 1, "headline_parameters": SHORT, "article_parameters": SHORT})
    smoke.json_route("POST", "/v1/completions", {"model": "headline", "prompt": "", "max_tokens": 16, "seed": 7})
    item = news["results"][0] if news else None
    text = f"{item['headline']['text']}\n{item['article']['text']}" if item else "A text to check for the watermark."
    smoke.json_route("POST", "/v1/detect", {"text": text})
    smoke.json_route("GET", "/openapi.json")
    for path in PAGES:
        smoke.page(path)
    print(f"{smoke.failures} failure(s)" if smoke.failures else "all routes answered as expected", flush=True)
    return smoke.failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the stack's ApiUrl output (…/prod), or http://127.0.0.1:3000")
    parser.add_argument("--key", default=os.environ.get("NEWSGEN_API_KEY"), help="x-api-key (or NEWSGEN_API_KEY)")
    args = parser.parse_args(argv)
    return 1 if run(args.url, args.key) else 0


if __name__ == "__main__":
    sys.exit(main())
