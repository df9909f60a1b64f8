"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stepline import _settings
from tests._support import refusing

#: the tier markers' guard and ``--tier`` (see tests/README.md)
pytest_plugins = ["pytester", "tests._support.tiers"]

#: the official SDKs' recorded exchanges, kept with the tests (see its README.md)
CAPTURES = Path(__file__).resolve().parent / "golden" / "captures"
#: the shipped default engine URL, where a developer's own engine listens
SHIPPED_DEV_BASE_URL = _settings.DEV_BASE_URL
#: opts a test out of the refusing default: it checks the shipped URL and opens no socket
SHIPPED_DEFAULT = "shipped_default_url"


def pytest_configure(config: pytest.Config) -> None:
    """Point the default engine URL at ``refusing.url()``, before collection.

    A dev-mode client given no engine URL (argument or environment) would reach
    127.0.0.1:8288, where a developer's own engine may listen. Only this fallback changes,
    so a URL a test passes or sets in the environment still wins, and clients built
    with ``environ={}`` or at import time are covered too.
    """
    config.addinivalue_line(
        "markers",
        f"{SHIPPED_DEFAULT}: the test checks the shipped default engine URL "
        f"({SHIPPED_DEV_BASE_URL}) and opens no socket to it",
    )
    _settings.DEV_BASE_URL = refusing.url()


def pytest_unconfigure(config: pytest.Config) -> None:
    _settings.DEV_BASE_URL = SHIPPED_DEV_BASE_URL
    refusing.release()


@pytest.fixture(autouse=True)
def _shipped_default(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker(SHIPPED_DEFAULT) is not None:
        monkeypatch.setattr(_settings, "DEV_BASE_URL", SHIPPED_DEV_BASE_URL)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Sums the blocks the docs tests ran and the fragments they counted.

    Here, not in tests/docs/conftest.py: under xdist only the controller reports, and it
    loads this conftest alone.
    """
    ran = setup = 0
    fragments: list[str] = []
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == "docs_blocks":
                ran += value["ran"]
                setup += value["setup"]
                fragments += value["fragments"]
    if not ran and not fragments:
        return
    terminalreporter.section("docs blocks")
    terminalreporter.write_line(
        f"{ran} blocks run, {len(fragments)} fragments, {setup} invisible setup blocks"
    )
    for fragment in fragments:
        terminalreporter.write_line(f"  fragment {fragment}")


class StubServer:
    """A real HTTP server on localhost that records requests and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # answer(request) -> (status, body) or (status, body, headers); bytes bodies go raw
        self.answer: Callable[[dict[str, Any]], tuple[Any, ...]] = lambda _req: (200, {})
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw": raw,
                    "body": json.loads(raw) if raw else None,
                }
                stub.requests.append(record)
                answer = stub.answer(record)
                status, body = answer[0], answer[1]
                extra: dict[str, str] = answer[2] if len(answer) > 2 else {}
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


def load_capture(kind: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / kind / name).read_text())
    return data
