"""Fixtures and hooks shared by the whole suite (helpers live in ``tests/_support``)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepline import _settings
from tests._support import refusing
from tests._support.databases import STORES, database
from tests._support.stub_server import StubServer

#: the tier markers' guard and ``--tier`` (see tests/README.md)
pytest_plugins = ["pytester", "tests._support.tiers", "tests._support.file_order"]

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
    _hear_ctrl_c()


def _hear_ctrl_c() -> None:
    """Give SIGINT back its default handler when the suite was started ignoring it.

    A shell starts a background job (``make test &``, ``nohup``) with SIGINT ignored, and
    an ignored signal stays ignored across ``exec``: every server a test starts would
    ignore the Ctrl-C the test sends it and hang its test. In each xdist worker and in a
    plain run alike (this hook runs in both), before any child is started.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    _settings.DEV_BASE_URL = SHIPPED_DEV_BASE_URL
    refusing.release()


@pytest.fixture(autouse=True)
def _shipped_default(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker(SHIPPED_DEFAULT) is not None:
        monkeypatch.setattr(_settings, "DEV_BASE_URL", SHIPPED_DEV_BASE_URL)


@pytest.fixture(autouse=True)
def _recursion_limit_kept() -> Iterator[None]:
    # mypy run in process (tests/typing) raises the interpreter's recursion limit for good:
    # a later test of the same worker relying on the limit (the CEL evaluator's "nested
    # too deeply") would then pass or fail by the order the files ran in
    limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(limit)


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


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture(params=STORES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for one engine: a SQLite file, or a fresh Postgres schema."""
    with database(request.param, tmp_path) as url:
        yield url
