"""API Gateway REST proxy events as API Gateway sends them, for calling handlers directly."""

from __future__ import annotations

import json
import uuid


def api_event(
    method: str, path: str, body: object = None, *, raw: str | None = None, headers: dict | None = None
) -> dict:
    text = raw if raw is not None else (None if body is None else json.dumps(body))
    headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/Prod{path}",
            "stage": "Prod",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": text,
        "isBase64Encoded": False,
    }


class FakeContext:
    function_name = "newsgen-api-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:newsgen-api-test"

    def __init__(self, remaining_ms: int = 28_000):
        self.aws_request_id = str(uuid.uuid4())
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms
