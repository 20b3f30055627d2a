"""`make smoke` (infra/smoke.py), the check after a deploy, against the local server: it passes on the API as it
answers, and says which route's answer changed shape when one does."""

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from infra import smoke

ROUTES = {
    "GET /health",
    "GET /v1/models",
    "POST /v1/headlines",
    "POST /v1/articles",
    "POST /v1/news",
    "POST /v1/completions",
    "POST /v1/detect",
    "GET /openapi.json",
    *(f"GET {path}" for path in smoke.PAGES),
}


def routes_in(output: str, mark: str) -> set[str]:
    return {" ".join(line.split()[1:3]).rstrip(":") for line in output.splitlines() if line.startswith(mark)}


def test_every_route_answers_as_the_smoke_test_expects(server, capsys):
    assert smoke.main([server, "--key", "unused-locally"]) == 0
    output = capsys.readouterr().out
    assert routes_in(output, "ok ") == ROUTES and "FAIL" not in output


def test_a_route_whose_answer_changes_shape_fails_with_a_line(published, service_for, monkeypatch, capsys):
    """Each answer altered (a JSON answer's first field renamed, a page emptied): a FAIL line for every route."""
    from handlers import api
    from infra.local.server import make_handler

    monkeypatch.setattr(api, "service", service_for(published["bucket"]))

    def altered(event, context):
        response = api.lambda_handler(event, context)
        try:
            answer = json.loads(response["body"])
        except ValueError:
            response["body"] = ""
        else:
            first = next(iter(answer))
            response["body"] = json.dumps({("renamed" if k == first else k): v for k, v in answer.items()})
        return response

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(altered))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert smoke.main([f"http://127.0.0.1:{httpd.server_address[1]}"]) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
    output = capsys.readouterr().out
    assert routes_in(output, "FAIL") == ROUTES and routes_in(output, "ok ") == set()
    assert "FAIL  POST /v1/news: renamed" not in output  # the line names what is missing, not what is extra
    assert "FAIL  POST /v1/news: results: missing" in output


@pytest.mark.parametrize(
    "value, problems",
    [
        ({"a": [{"b": 1}]}, []),
        ({"a": [{"b": True}]}, ["a[0].b: true is not int"]),
        ({"a": []}, ["a: [] is not a non-empty list"]),
        ({}, ["a: missing"]),
        ({"a": [{"b": 1.5}]}, ["a[0].b: 1.5 is not int"]),
    ],
)
def test_shapes_name_the_place_that_differs(value, problems):
    assert smoke.mismatches(value, {"a": [{"b": int}]}) == problems


def test_an_unreachable_api_is_one_failure_per_route(capsys):
    assert smoke.run("http://127.0.0.1:9", None) == len(ROUTES)  # the discard port: nothing listens
    assert routes_in(capsys.readouterr().out, "FAIL") == ROUTES
