"""The blocking transport's plain-HTTP connections (``stepline._transport.keepalive``),
against real servers.

Keep-alive reuse, a server's keep-alive timeout noticed before reuse, ``Connection:
close``, chunked answers, threads sharing one transport, timeouts and refusals as
``status=0``, and the proxy rule: with ``HTTP_PROXY`` set, requests go through httpx and
the proxy, as before.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stepline._transport import effects, performers
from tests._support.polling import wait_until

pytestmark = [pytest.mark.slow]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.seen.append((self.command, self.path, self.connection.getsockname()))
        answer = json.dumps({"got": body.decode(), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("X-Custom", "Yes")
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (answer[:5], answer[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(answer)))
        if self.server.close_each:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, idle: float | None = None, close_each: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str, Any]] = []
        self.connections = 0
        self.closed = 0
        self.close_each = close_each
        self.chunked = False
        Handler.timeout = idle  # the server closes a connection idle this long
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[socket.socket, Any]:
        found = super().get_request()
        self.connections += 1
        return found

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed += 1  # its handler is done with the connection: closed on this side


@contextlib.contextmanager
def serving(**options: Any) -> Iterator[Server]:
    server = Server(**options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        Handler.timeout = None


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[performers.SyncTransport]:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    found = performers.SyncTransport()
    yield found
    found.close()


def post(transport: performers.SyncTransport, url: str, body: bytes = b"{}", timeout: float = 5.0):
    request = effects.HttpRequest("POST", url, {"content-type": "application/json"}, body, timeout)
    return transport.request(request)


def test_requests_share_one_kept_alive_connection(transport: performers.SyncTransport) -> None:
    with serving() as server:
        answers = [post(transport, f"{server.url}/e/k?n={n}", b"%d" % n) for n in range(20)]
    assert [a.status for a in answers] == [200] * 20
    assert [json.loads(a.body) for a in answers] == [
        {"got": str(n), "path": f"/e/k?n={n}"} for n in range(20)
    ]
    assert answers[0].headers["x-custom"] == "Yes"
    assert all(name == name.lower() for name in answers[0].headers)
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(
    transport: performers.SyncTransport,
) -> None:
    with serving(idle=0.2) as server:
        first = post(transport, f"{server.url}/a")
        # the server's keep-alive timeout closes the idle connection
        wait_until(lambda: server.closed == 1, timeout=10, message="the idle connection closed")
        second = post(transport, f"{server.url}/b")
    assert (first.status, second.status) == (200, 200)
    assert second.error is None
    assert server.connections == 2


def test_connection_close_answers_are_not_reused(transport: performers.SyncTransport) -> None:
    with serving(close_each=True) as server:
        answers = [post(transport, f"{server.url}/x") for _ in range(3)]
    assert [a.status for a in answers] == [200] * 3
    assert server.connections == 3


def test_a_chunked_answer_is_read_whole(transport: performers.SyncTransport) -> None:
    with serving() as server:
        server.chunked = True
        answer = post(transport, f"{server.url}/chunks", b"hello")
        again = post(transport, f"{server.url}/chunks", b"again")
    assert json.loads(answer.body) == {"got": "hello", "path": "/chunks"}
    assert json.loads(again.body)["got"] == "again"
    assert server.connections == 1


def test_threads_share_one_transport(transport: performers.SyncTransport) -> None:
    results: dict[int, list[Any]] = {}

    def worker(n: int) -> None:
        results[n] = [
            json.loads(post(transport, f"{server.url}/t{n}", b"%d-%d" % (n, i)).body)["got"]
            for i in range(25)
        ]

    with serving() as server:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: [f"{n}-{i}" for i in range(25)] for n in range(8)}
    assert server.connections <= 8


def test_failures_are_status_0_with_the_reason(transport: performers.SyncTransport) -> None:
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        began = time.monotonic()
        stalled = post(transport, f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.3)
        waited = time.monotonic() - began
        closed_port = silent.getsockname()[1]
    refused = post(transport, f"http://127.0.0.1:{closed_port}/")
    invalid = post(transport, "http://[::1/")
    for failed in (stalled, refused, invalid):
        assert (failed.status, failed.body, dict(failed.headers)) == (0, b"", {})
        assert failed.error
    assert 0.25 < waited < 3.0
    assert "timed out" in (stalled.error or "")


def test_a_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set, requests go to the proxy (through httpx), absolute URL and all."""
    with serving() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        transport = performers.SyncTransport()
        try:
            answer = post(transport, "http://engine.invalid:8288/v1/events")
        finally:
            transport.close()
    assert answer.status == 200
    assert [(method, path) for method, path, _ in proxy.seen] == [
        ("POST", "http://engine.invalid:8288/v1/events")
    ]


def test_credentials_in_the_url_go_through_httpx_as_basic_auth(
    transport: performers.SyncTransport,
) -> None:
    with serving() as server:
        seen: list[str | None] = []
        handle = Handler.do_POST

        def recording(self: Handler) -> None:
            seen.append(self.headers.get("authorization"))
            handle(self)

        Handler.do_POST = recording  # type: ignore[method-assign]
        try:
            answer = post(transport, server.url.replace("http://", "http://ops:s3cret@") + "/x")
        finally:
            Handler.do_POST = handle  # type: ignore[method-assign]
    assert answer.status == 200
    assert seen == ["Basic b3BzOnMzY3JldA=="]
