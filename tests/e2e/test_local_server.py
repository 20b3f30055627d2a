"""The plain local server: real HTTP on 127.0.0.1 turned into API Gateway events for the same handler."""

import json
import urllib.error
import urllib.request


def request(url, data=None, method=None):
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_headlines_over_http(server):
    status, body = request(f"{server}/v1/headlines", json.dumps({"n": 2}).encode())
    assert status == 200
    assert len(body["results"]) == 2 and body["synthetic"] is True


def test_errors_over_http_are_json(server):
    status, body = request(f"{server}/v1/headlines", b'{"n": ')
    assert status == 400 and body["error_type"] == "validation_error"
    status, body = request(f"{server}/v1/headlines", b"\xff\xfe not utf-8")
    assert status == 400 and "error" in body
    status, body = request(f"{server}/nope")
    assert status == 404 and body["error_type"] == "not_found"


def test_openapi_is_served(server):
    status, spec = request(f"{server}/openapi.json")
    assert status == 200
    assert {"/v1/headlines", "/v1/articles", "/v1/news", "/v1/models", "/health"} <= set(spec["paths"])
