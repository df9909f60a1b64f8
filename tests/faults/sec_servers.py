"""Real loopback HTTP servers for the answer and gateway security tests.

``Scripted`` plays an app (or an AI provider, or a victim inside the network): it
records every request and answers from a script, with bodies given whole or streamed
in chunks (no ``Content-Length``: only a reader that stops can stay small).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stepline._protocol import signing

KEY = "signkey-prod-" + "5eed" * 16
OTHER_KEY = "signkey-prod-" + "bad0" * 16
EVENT_KEY = "sec-event-key"
SDK = {"x-inngest-sdk": "inngest-py:v0.5.19", "x-inngest-req-version": "2"}
START: dict[str, Any] = {"mode": "start", "signing_keys": (KEY,), "event_keys": (EVENT_KEY,)}

#: (status, headers, body): body is bytes, or an iterable of chunks sent chunked
Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]]


class Scripted:
    """A threaded HTTP server on 127.0.0.1 that records requests and answers a script."""

    def __init__(self, answer: Callable[[dict[str, Any]], Answer] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer = answer or (lambda _req: (200, {}, b"{}"))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw": raw,
                }
                server.requests.append(record)
                status, headers, body = server.answer(record)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                try:
                    if isinstance(body, bytes):
                        self.send_header("content-length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for chunk in body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the engine stopped reading: as it should

            do_GET = do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith(path)]

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def register_body(app_url: str, fn_id: str = "sec-fn", attempts: int = 2) -> dict[str, Any]:
    """What an app at ``app_url`` with one function (``sec/go``) registers."""
    url = f"{app_url}/api/inngest"
    step = {
        "id": "step",
        "name": "step",
        "runtime": {"type": "http", "url": f"{url}?fnId={fn_id}&stepId=step"},
        "retries": {"attempts": attempts},
    }
    function = {"id": fn_id, "name": fn_id, "triggers": [{"event": "sec/go"}]}
    function["steps"] = {"step": step}
    return {"appName": "sec", "url": url, "sdk": "py:v0.5.19", "v": "0.1", "functions": [function]}


def json_answer(
    status: int, value: Any, *, key: str | None = None, now: float | None = None
) -> Answer:
    """An SDK's answer, signed with ``key`` when given (at ``now``, default the time)."""
    body = json.dumps(value).encode()
    headers = {**SDK, "content-type": "application/json"}
    if key is not None:
        stamp = time.time() if now is None else now
        headers["x-inngest-signature"] = signing.sign(body, key, now=stamp)
    return status, headers, body


def gateway_op(url: str, step_id: str = "ai") -> dict[str, Any]:
    """An ``AIGateway`` op asking the engine to POST to ``url``."""
    return {
        "op": "AIGateway",
        "id": step_id,
        "name": step_id,
        "displayName": step_id,
        "opts": {
            "url": url,
            "format": "openai",
            "auth_key": "sk-test",
            "headers": {"x-extra": "1"},
            "body": {"model": "m", "messages": []},
            "type": "step.ai.infer",
        },
    }


def steps_of(request: dict[str, Any]) -> dict[str, Any]:
    """The memoized steps the engine sent in a call."""
    return dict(json.loads(request["raw"])["steps"])


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of a JSON string, in chunks (the engine sees one huge answer)."""
    yield b'"'
    sent = 1
    block = b"x" * size
    while sent < total - 1:
        part = block[: min(size, total - 1 - sent)]
        yield part
        sent += len(part)
    yield b'"'
