"""The test tiers: markers by what a test needs, a guard that keeps them true, ``--tier``.

A test that starts a process, drives Chromium or connects to Postgres, MariaDB or Redis
carries the marker naming it (on the test, its class or its module's ``pytestmark``);
``slow`` marks one that needs none of those but takes long. ``--tier fast`` deselects
every test carrying any of them, which is the one definition of the fast tier.

The guard wraps each test's setup, call and teardown (so a fixture started for the test
counts) and watches the few places those things begin: ``subprocess.Popen`` (asyncio's
subprocesses go through it), ``_posixsubprocess.fork_exec`` (``multiprocessing``'s spawn
and forkserver), ``os.fork``, ``os.posix_spawn``, ``os.system``,
``multiprocessing``'s ``BaseProcess.start``, psycopg's connects (its pools call them),
socket connects to the MariaDB and Redis ports (PyMySQL, aiomysql and redis-py are pure
Python over ``socket``), and Playwright (its driver's start, and each new browser
context or page). A test lacking the marker fails at the end of that phase, with a
message naming the marker to add. The patches are installed once per process and cost a
global read when no test runs.

With ``STEPLINE_TIERS_REPORT=<path>`` the guard records instead of failing: one JSON
line per test with the markers it needed and lacked, its duration and what it did.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing.process
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Generator, Iterable
from typing import Any

import pytest

#: the markers, each with the line ``pytest --markers`` shows
MARKERS: dict[str, str] = {
    "process": "starts a subprocess or forks (the guard in tests/_support/tiers.py checks it)",
    "browser": "drives Chromium through Playwright",
    "postgres": "connects to the Postgres server (STEPLINE_TEST_POSTGRES_URL)",
    "mariadb": "connects to the MariaDB/MySQL server (STEPLINE_TEST_MYSQL_URL)",
    "redis": "connects to the Redis server",
    "slow": "needs no process, browser or server but takes long; left out of the fast tier",
}
#: the tiers ``--tier`` knows, each a predicate over a test's markers
TIERS = ("fast", "all")

REPORT_ENV = "STEPLINE_TIERS_REPORT"
#: the report's path, read once per session (tests change the environment)
_REPORT = pytest.StashKey[str]()

_MARKER_WORD = {
    "process": "starts a process",
    "browser": "drives Chromium",
    "postgres": "connects to Postgres",
    "mariadb": "connects to MariaDB",
    "redis": "connects to Redis",
}


def _ports_from(env: str, default: int) -> set[int]:
    url = os.environ.get(env)
    ports = {default}
    if url:
        try:
            port = urllib.parse.urlsplit(url).port
        except ValueError:
            port = None
        if port:
            ports.add(port)
    return ports


#: socket ports whose connects mean a server the marker names
_PORTS: dict[int, str] = {
    **{port: "redis" for port in _ports_from("STEPLINE_TEST_REDIS_URL", 6379)},
    **{port: "mariadb" for port in _ports_from("STEPLINE_TEST_MYSQL_URL", 3306)},
}


class _Watch:
    """The test whose phase is running (a stack: pytester runs a session inside one)."""

    def __init__(self) -> None:
        self.items: list[pytest.Item] = []
        self.phase = ""
        # marker -> first thing seen needing it, per test (nodeid)
        self.seen: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()


_WATCH = _Watch()


def _note(marker: str, what: str) -> None:
    """Record that the running test did ``what``, which needs ``marker``."""
    items = _WATCH.items
    if not items:
        return
    item = items[-1]
    seen = _WATCH.seen.setdefault(item.nodeid, {})
    if marker not in seen:
        with _WATCH.lock:
            seen.setdefault(marker, what)


def _argv_text(args: Any) -> str:
    if isinstance(args, (str, bytes, os.PathLike)):
        parts = [os.fsdecode(args)]
    else:
        try:
            parts = [
                os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args
            ]
        except TypeError:
            parts = [repr(args)]
    shown = parts[:2] + (["..."] if len(parts) > 2 else [])
    return "[" + ", ".join(repr(p) for p in shown) + "]"


def _process_marker(args: Any) -> str:
    text = str(args).lower()
    return "browser" if ("playwright" in text or "chrom" in text) else "process"


def _wrap(owner: Any, name: str, describe: Callable[..., tuple[str, str] | None]) -> None:
    """Replace ``owner.name`` by a wrapper noting ``describe(*args)`` while a test runs."""
    original = getattr(owner, name, None)
    if original is None or getattr(original, "_stepline_tiers", False):
        return

    @functools.wraps(original)
    def watched(*args: Any, **kwargs: Any) -> Any:
        if _WATCH.items:
            noted = describe(*args, **kwargs)
            if noted is not None:
                _note(*noted)
        return original(*args, **kwargs)

    watched._stepline_tiers = True  # type: ignore[attr-defined]
    setattr(owner, name, watched)


def _popen(popen: subprocess.Popen[Any], args: Any, *_: Any, **__: Any) -> tuple[str, str]:
    return _process_marker(args), f"subprocess.Popen({_argv_text(args)})"


def _fork_exec(args: Any, *_: Any, **__: Any) -> tuple[str, str]:
    return _process_marker(args), f"_posixsubprocess.fork_exec({_argv_text(args)})"


def _posix_spawn(path: Any, argv: Any, *_: Any, **__: Any) -> tuple[str, str]:
    return _process_marker(argv), f"os.posix_spawn({_argv_text(argv)})"


def _system(command: Any, *_: Any, **__: Any) -> tuple[str, str]:
    return "process", f"os.system({command!r})"


def _fork(*_: Any, **__: Any) -> tuple[str, str]:
    return "process", "os.fork()"


def _mp_start(process: Any, *_: Any, **__: Any) -> tuple[str, str]:
    return "process", f"multiprocessing Process.start({process.name})"


def _psycopg(*args: Any, **kwargs: Any) -> tuple[str, str]:
    return "postgres", "psycopg connect"


def _socket_connect(sock: Any, address: Any, *_: Any) -> tuple[str, str] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        marker = _PORTS.get(address[1])
        if marker is not None:
            return marker, f"socket connect to {address[0]}:{address[1]}"
    return None


def _playwright(*_: Any, **__: Any) -> tuple[str, str]:
    return "browser", "a Playwright browser context or page"


def _install() -> None:
    """Install the patches (once per process; a wrapped function is not wrapped again)."""
    import _posixsubprocess

    # Popen._execute_child is where every Popen starts its child (fork_exec or posix_spawn)
    _wrap(subprocess.Popen, "_execute_child", _popen)
    # multiprocessing's spawn and forkserver call this directly, not through Popen
    _wrap(_posixsubprocess, "fork_exec", _fork_exec)
    for name in ("posix_spawn", "posix_spawnp"):
        _wrap(os, name, _posix_spawn)
    _wrap(os, "system", _system)
    _wrap(os, "fork", _fork)
    _wrap(multiprocessing.process.BaseProcess, "start", _mp_start)
    for name in ("connect", "connect_ex"):
        _wrap(socket.socket, name, _socket_connect)
    _install_late()


def _install_late() -> None:
    """Patch the libraries imported since the last call (psycopg, Playwright)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        # psycopg.connect is Connection.connect bound at import; pools call the class's
        for owner, name in (
            (psycopg, "connect"),
            (psycopg.Connection, "connect"),
            (psycopg.AsyncConnection, "connect"),
        ):
            _wrap(owner, name, _psycopg)
    sync_api = sys.modules.get("playwright.sync_api")
    if sync_api is not None:
        for name in ("new_context", "new_page"):
            _wrap(sync_api.Browser, name, _playwright)
    async_api = sys.modules.get("playwright.async_api")
    if async_api is not None:
        for name in ("new_context", "new_page"):
            _wrap(async_api.Browser, name, _playwright)


# -- pytest hooks -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stepline tiers")
    group.addoption(
        "--tier",
        choices=TIERS,
        default="all",
        help="fast: deselect every test marked " + "/".join(MARKERS) + " (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT] = os.environ.get(REPORT_ENV, "")
    registered = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, description in MARKERS.items():
        if name not in registered:
            config.addinivalue_line("markers", f"{name}: {description}")
    with contextlib.suppress(ImportError):
        import psycopg  # noqa: F401  (patched before any test can connect)
    _install()


#: a parameter id naming a server marks the test with it (a store or dialect parametrized
#: over SQLite and Postgres runs its ``[postgres]`` case on the server, the other not)
PARAM_MARKERS = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mariadb",
    "mariadb": "mariadb",
    "redis": "redis",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        for token in callspec.id.split("-"):
            name = PARAM_MARKERS.get(token)
            if name is not None and item.get_closest_marker(name) is None:
                item.add_marker(name)
    if config.getoption("tier") != "fast":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if any(item.get_closest_marker(name) for name in MARKERS):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _module(item: pytest.Item) -> object:
    return getattr(item, "module", None)


def _lacking(item: pytest.Item, needed: Iterable[str]) -> list[str]:
    return [name for name in needed if item.get_closest_marker(name) is None]


def _watch(
    item: pytest.Item, phase: str, nextitem: pytest.Item | None = None
) -> Generator[None, Any, Any]:
    _install_late()
    before = dict(_WATCH.seen.get(item.nodeid, {}))
    _WATCH.items.append(item)
    try:
        result = yield
    finally:
        _WATCH.items.pop()
        _install_late()
    if phase == "teardown" and (nextitem is None or _module(nextitem) is not _module(item)):
        # the wider fixtures finishing here (module, package, session) were started, and
        # checked, in the test that first asked for them
        _WATCH.seen[item.nodeid] = before
    seen = _WATCH.seen.get(item.nodeid)
    if not seen or item.config.stash.get(_REPORT, ""):
        return result
    lacking = _lacking(item, seen)
    if lacking:
        _WATCH.seen[item.nodeid] = {k: v for k, v in seen.items() if k not in lacking}
        pytest.fail(
            "; ".join(
                f"this test {_MARKER_WORD[name]} ({seen[name]}): mark it @pytest.mark.{name}"
                for name in lacking
            )
            + " (on the test, its class, or the module's pytestmark; see tests/README.md)",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _watch(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _watch(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, Any, Any]:
    return (yield from _watch(item, "teardown", nextitem))


#: per test while it runs, in record mode: its phases' time so far, and its worst outcome
_DURATIONS: dict[str, float] = {}
_OUTCOMES: dict[str, str] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    nodeid = item.nodeid
    seen = _WATCH.seen.pop(nodeid, {}) if call.when == "teardown" else {}
    path = item.config.stash.get(_REPORT, "")
    if not path:
        return report
    duration = _DURATIONS.pop(nodeid, 0.0) + report.duration
    if not report.passed:
        _OUTCOMES.setdefault(nodeid, report.outcome)
    if call.when != "teardown":
        _DURATIONS[nodeid] = duration
        return report
    line = {
        "nodeid": nodeid,
        "needs": seen,
        "outcome": _OUTCOMES.pop(nodeid, "passed"),
        "duration": round(duration, 3),
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return report
