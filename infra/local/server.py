"""A plain local HTTP server in front of the API handler: each HTTP request becomes an API Gateway REST proxy
event, the same `lambda_handler` answers it, and the proxy response becomes the HTTP response. Everything,
the spec at /openapi.json and the playground page at / included, is the handler's answer.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infra.local.harness import API_PORT, HOST, LambdaContext, api_event
from newsgen.errors import error_body

# API Gateway's own limit for payloads; our handler applies the smaller MAX_BODY_BYTES itself.
GATEWAY_MAX_BODY = 10 * 1024 * 1024


def make_handler(lambda_handler: Callable[[dict, object], dict]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "newsgen-local"

        def log_request(self, code="-", size="-"):  # said once the answer is sent, with its time (_dispatch)
            pass

        def log_message(self, fmt, *args):  # http.server's own errors (a malformed request line, ...)
            print(f"{self.address_string()} {fmt % args}", flush=True)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.status = status
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, error_type: str) -> None:
            body = json.dumps(error_body(message, error_type)).encode()
            self._send(status, body, {"Content-Type": "application/json"})

        def _dispatch(self) -> None:
            started, self.status = time.perf_counter(), 0
            try:
                self._answer()
            finally:  # one line per request: method, path, status, milliseconds (no body, no query values)
                milliseconds = (time.perf_counter() - started) * 1000
                print(f"{self.command} {self.path.split('?')[0]} {self.status} {milliseconds:.0f} ms", flush=True)

        def _answer(self) -> None:
            length = self.headers.get("Content-Length")
            try:
                size = int(length) if length else 0
            except ValueError:
                return self._error(400, "Content-Length is not a number", "bad_request")
            if size > GATEWAY_MAX_BODY:
                self.close_connection = True
                return self._error(413, f"body of {size} bytes is over the gateway's limit", "payload_too_large")
            body = self.rfile.read(size) if size else None
            request_id = str(uuid.uuid4())
            context = LambdaContext.of("api", aws_request_id=request_id)
            headers = dict(self.headers.items())
            event = api_event(self.command, self.path, raw=body or b"", headers=headers, request_id=request_id)
            try:
                response = lambda_handler(event, context)
            except Exception as exc:  # the handler should never raise; if it does, answer like API Gateway
                print(f"handler raised {type(exc).__name__}: {exc}", flush=True)
                return self._error(502, "the function failed to answer", "bad_gateway")
            out_headers = {k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
            out_headers.update(response.get("headers") or {})
            out_headers["x-amzn-RequestId"] = request_id
            payload = response.get("body") or ""
            data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
            self._send(int(response.get("statusCode", 502)), data, out_headers)

        def __getattr__(self, name: str):
            # Every method (TRACE, PROPFIND, …) reaches the handler, which answers 404/405 JSON like API
            # Gateway, instead of http.server's HTML 501.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

    return Handler


def serve(host: str = HOST, port: int = API_PORT) -> ThreadingHTTPServer:
    """Start the server on a background thread and return it (call .shutdown() to stop)."""
    from handlers import api

    server = ThreadingHTTPServer((host, port), make_handler(api.lambda_handler))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="newsgen-local-api", daemon=True).start()
    return server
