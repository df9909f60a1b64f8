"""The embedded engine under gunicorn: back with the workers, never in the master.

Real processes: gunicorn (3 workers; Flask and Django on sync workers, FastAPI on uvicorn's)
runs ``tests/apps/process_manager.py`` on one SQLite file. A burst of runs (a step holding a second,
sleeps) is under way when every worker is SIGKILLed; gunicorn respawns them and, with only
requests that do not touch Stepline, or none at all, every run completes within the lease
and a few seconds, a sleep and a retry that fell due meanwhile fire, no run completes twice
and no recorded step runs again. With ``--preload`` and a client call at import, the master
records the event and never runs a step: its pid is in no marker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import stepline
from stepline.embedded import EmbeddedEngine, _prefork
from tests._support.ci import require_module
from tests._support.polling import wait_until
from tests._support.processes import APPS, clean_env, free_port, log_tail, spawned
from tests.apps import process_manager

pytestmark = [pytest.mark.process]

gunicorn_config = require_module("gunicorn.config")

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.process_manager"
HOOK = APPS / "process_manager_gunicorn_conf.py"
LEASE = 3.0
#: beyond the lease: a worker's boot (seconds on a loaded machine), the engine's start, the
#: rest of the runs' steps. Without an engine started by the worker, nothing ever recovers.
SLACK = 20.0
WORKERS = 3
SPECS = {
    "flask": [f"{APP}:flask_app()"],
    "django": [f"{APP}:django_app"],
    "fastapi": ["-k", "uvicorn.workers.UvicornWorker", f"{APP}:fastapi_app()"],
}


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    database: Path
    marks: Path
    log: Path

    def send(self, *events: dict[str, object]) -> list[str]:
        reply = httpx.post(f"{self.base}/send", json={"events": list(events)}, timeout=20)
        assert reply.status_code == 200, reply.text
        ids: list[str] = reply.json()["ids"]
        return ids

    def runs(self) -> dict[str, tuple[str, dict[str, str] | None]]:
        """Each run's status and output, read from the engine's file (no request)."""
        if not self.database.exists():
            return {}
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 5000")
            rows = db.execute("SELECT run_id, status, output FROM runs").fetchall()
        return {run: (status, json.loads(out) if out else None) for run, status, out in rows}

    def marks_(self) -> list[list[str]]:
        text = self.marks.read_text() if self.marks.exists() else ""
        return [line.split() for line in text.splitlines()]

    def workers(self) -> set[int]:
        """The master's children: its workers now."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                        found.add(int(entry.name))
        return found


@contextlib.contextmanager
def gunicorn(
    tmp_path: Path,
    framework: str,
    *,
    hook: bool = False,
    preload: bool = False,
    **env: str,
) -> Iterator[Server]:
    port, database, marks = free_port(), tmp_path / "engine.db", tmp_path / "marks"
    command = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    command += ["--graceful-timeout", "2", "--timeout", "60"]
    if any(s.name == "control_socket_disable" for s in gunicorn_config.KNOWN_SETTINGS):
        command.append("--no-control-socket")  # one per user: tests run side by side
    if hook:
        command += ["-c", str(HOOK)]
    if preload:
        command.append("--preload")
    command += SPECS[framework]
    environ = clean_env(
        PM_DATABASE=str(database),
        PM_MARKS=str(marks),
        PM_LEASE=str(LEASE),
        DJANGO_SETTINGS_MODULE=APP,
        PYTHONWARNINGS="ignore",  # uvicorn.workers is deprecated: not our warning
        **env,
    )
    log = tmp_path / "gunicorn.log"
    base = f"http://127.0.0.1:{port}"
    with spawned(command, log=log, env=environ, cwd=ROOT, up=f"{base}/plain", timeout=30) as proc:
        server = Server(base, proc, database, marks, log)
        wait_until(lambda: len(server.workers()) == WORKERS, timeout=20, message="3 workers")
        yield server


def recorded_steps_ran_once(server: Server, outputs: dict[str, dict[str, str]]) -> None:
    """Each recorded step (its token in the run's output) is the last run of that step.

    A step whose worker was killed before its result was recorded may run again; one
    whose result was recorded must not (markers are one file, in the order written).
    """
    lines = server.marks_()
    for run, output in outputs.items():
        for step, token in output.items():
            done = [i for i, m in enumerate(lines) if m[0] == "done" and m[4] == token]
            assert len(done) == 1, (run, step, token)
            later = [m for m in lines[done[0] :] if m[0] == "start" and m[1:3] == [run, step]]
            assert later == [], f"step {step} of {run} ran again after it was recorded"


def kill_workers_mid_burst(
    server: Server, *, plain_requests: bool, works: int = 9
) -> tuple[float, float]:
    """The scenario: a burst, every worker SIGKILLed.

    Returns:
        Seconds from the kill until every run completed, and until the first step ran
        in a new worker.
    """
    nap = 3.0
    server.send(
        *({"name": "pm/work", "data": {"hold": 1.0}} for _ in range(works)),
        {"name": "pm/nap", "data": {"seconds": nap}},
        {"name": "pm/flaky"},
    )
    wait_until(
        lambda: (
            (marks := server.marks_())
            and sum(1 for m in marks if m[0] == "start" and m[2] == "b") >= 3
            and any(m[0] == "fail" for m in marks)
        ),
        timeout=20,
        message=lambda: f"steps b under way:\n{server.marks.read_text()}",
    )
    old = server.workers()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    killed, killed_at = time.monotonic(), time.time()
    unfinished = [r for r, (status, _) in server.runs().items() if status != "Completed"]
    assert unfinished, "the burst ended before the kill: nothing to recover"

    stop = threading.Event()

    def plain() -> None:  # requests that never touch Stepline, to every worker in turn
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{server.base}/plain", timeout=5)
            stop.wait(0.2)

    pokers = [threading.Thread(target=plain, daemon=True) for _ in range(3 * plain_requests)]
    for poker in pokers:
        poker.start()
    try:
        runs = wait_until(
            lambda: (r := server.runs()) and all(s == "Completed" for s, _ in r.values()) and r,
            timeout=LEASE + SLACK + 10,
            interval=0.1,
            message=lambda: f"every run to complete:\n{server.runs()}\n{log_tail(server.log)}",
        )
        recovered = time.monotonic() - killed
    finally:
        stop.set()
        for poker in pokers:
            poker.join(10)
    assert len(runs) == works + 2  # one run per event: none started twice
    assert server.workers().isdisjoint(old)  # gunicorn respawned them
    outputs = {run: out for run, (_, out) in runs.items() if out is not None}
    assert len(outputs) == len(runs)
    recorded_steps_ran_once(server, outputs)
    # the sleep fell due after the kill: a new worker's engine woke it, with no Stepline call
    napped = next(run for run, out in outputs.items() if "after" in out)
    done = [m for m in server.marks_() if m[1] == napped and m[0] == "done"]
    assert [m[2] for m in done][-2:] == ["before", "after"]
    # a step killed after its code ended and before the engine recorded it runs again
    # (at least once): every earlier "before" ended in a killed worker
    assert all(m[2] == "before" and int(m[3]) in old for m in done[:-2]), done
    assert float(done[-2][-1]) + nap > killed_at
    assert int(done[-1][3]) not in old
    # the retry of a step that failed before the kill ran in a new worker
    retried = next(m for m in server.marks_() if m[0] == "done" and m[2] == "try")
    assert int(retried[3]) not in old
    resumed = min(float(m[-1]) for m in server.marks_() if int(m[3]) not in old) - killed_at
    return recovered, resumed


@pytest.mark.timeout(120)  # three processes booting on a loaded machine: seconds each
@pytest.mark.parametrize("plain_requests", [True, False], ids=["plain-requests", "no-requests"])
def test_flask_workers_killed_mid_burst_come_back_with_their_engines(
    tmp_path: Path, plain_requests: bool
) -> None:
    # with requests: the first one of any kind starts a worker's engine; without: the hook
    with gunicorn(tmp_path, "flask", hook=not plain_requests) as server:
        recovered, resumed = kill_workers_mid_burst(server, plain_requests=plain_requests)
    print(f"\nflask, plain requests={plain_requests}: {resumed:.1f}s, {recovered:.1f}s")
    assert recovered < LEASE + SLACK


@pytest.mark.timeout(120)
def test_preloaded_master_never_runs_a_step(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "flask", hook=True, preload=True, PM_SEND_AT_IMPORT="1") as server:
        master = server.proc.pid
        # the event the master sent at import is run by a worker
        wait_until(
            lambda: [s for s, _ in server.runs().values()] == ["Completed"],
            timeout=LEASE + SLACK,
            message=lambda: f"the import's run to complete: {server.runs()}",
        )
        server.send(*({"name": "pm/work", "data": {"hold": 0.1}} for _ in range(6)))
        wait_until(
            lambda: (
                (r := server.runs())
                and len(r) == 7
                and all(s == "Completed" for s, _ in r.values())
            ),
            timeout=20,
            message=lambda: f"every run to complete: {server.runs()}",
        )
        pids = collections.Counter(int(m[3]) for m in server.marks_())
        log = server.log.read_text()
    assert master not in pids, f"the master ({master}) ran steps: {pids}"
    assert f"does not run work in pid {master}" in log  # it said why


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("framework", "plain_requests"),
    [("django", True), ("django", False), ("fastapi", False)],
    ids=["django-plain-requests", "django-no-requests", "fastapi-uvicorn-no-requests"],
)
def test_other_frameworks_workers_killed_come_back_with_their_engines(
    tmp_path: Path, framework: str, plain_requests: bool
) -> None:
    # Django starts on any request (or the hook); FastAPI in each worker's lifespan
    hook = framework == "django" and not plain_requests
    with gunicorn(tmp_path, framework, hook=hook) as server:
        recovered, resumed = kill_workers_mid_burst(server, plain_requests=plain_requests)
    print(f"\n{framework}, plain requests={plain_requests}: {resumed:.1f}s, {recovered:.1f}s")
    assert recovered < LEASE + SLACK


# -- in process: what the rule decides, with a pretend pre-fork server ---------------------


@pytest.fixture
def under(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], None]:
    """Pretend to run under gunicorn (any id) or uwsgi (``worker_id()`` = the id)."""
    monkeypatch.setattr(_prefork._Process, "serving", False)

    def pretend(server: str, worker_id: int = 0) -> None:
        if server == "gunicorn":
            monkeypatch.setitem(sys.modules, "gunicorn.arbiter", types.ModuleType("arbiter"))
        else:
            fake = types.ModuleType("uwsgi")
            fake.worker_id = lambda: worker_id  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, "uwsgi", fake)

    return pretend


def test_pre_fork_servers_are_recognised(under: Callable[[str, int], None]) -> None:
    assert _prefork.held_back() is None  # pytest: no pre-fork server
    under("uwsgi", 2)
    assert _prefork.held_back() is None  # a uwsgi worker says so
    under("uwsgi", 0)
    assert _prefork.held_back() == "uwsgi"  # its master
    _prefork.mark_serving()
    assert _prefork.held_back() is None
    _prefork.forked()  # a child serves once it says so
    assert _prefork.held_back() == "uwsgi"


UWSGI_APP = """
import json, os
from stepline.embedded import _prefork

MASTER = {"pid": os.getpid(), "server": _prefork.server(), "held_back": _prefork.held_back()}


def application(environ, start_response):
    here = {"pid": os.getpid(), "server": _prefork.server(), "held_back": _prefork.held_back()}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"master": MASTER, "worker": here}).encode()]
"""


def test_a_real_uwsgi_master_is_held_back_and_its_workers_are_not(tmp_path: Path) -> None:
    """Under uwsgi itself (``--master`` without ``--lazy-apps``): the app is imported in
    the master, whose ``uwsgi.worker_id()`` is 0, and served by forked workers."""
    binary = Path(sys.executable).with_name("uwsgi")
    if not binary.exists():  # the dev extra installs pyuwsgi, which brings it
        require_module("pyuwsgi")
    (tmp_path / "uwsgi_app.py").write_text(UWSGI_APP)
    port = free_port()
    command = [
        str(binary),
        "--master",
        "--processes=2",
        f"--http-socket=127.0.0.1:{port}",
        f"--chdir={tmp_path}",
        "--module=uwsgi_app:application",
        f"--pythonpath={ROOT / 'src'}",
        "--die-on-term",
    ]
    log = tmp_path / "uwsgi.log"
    with spawned(command, log=log, env=clean_env(), up=f"http://127.0.0.1:{port}/") as proc:
        seen = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()
    master, worker = seen["master"], seen["worker"]
    assert master == {"pid": proc.pid, "server": "uwsgi", "held_back": "uwsgi"}, seen
    assert worker["pid"] != master["pid"]
    assert worker["server"] is None  # a worker: its id is 1 or 2
    assert worker["held_back"] is None


def test_a_client_call_in_a_possible_master_records_and_leases_nothing(
    tmp_path: Path, under: Callable[[str, int], None], caplog: pytest.LogCaptureFixture
) -> None:
    under("gunicorn", 0)
    os.environ["PM_MARKS"] = str(tmp_path / "marks")
    client = stepline.Client("held", is_production=False, environ={})
    functions = process_manager.declare(client)
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "e.db"), poll_interval=0.05)
    try:
        with caplog.at_level(logging.WARNING, "stepline.embedded"):
            client.send_sync(stepline.Event(name="pm/work", data={}))
            assert not engine.running  # no thread left between calls: uwsgi forks under them
            client.send_sync(stepline.Event(name="pm/work", data={}))
        assert caplog.text.count(f"does not run work in pid {os.getpid()}") == 1
        time.sleep(0.5)
        assert not (tmp_path / "marks").exists()  # recorded, never run here

        assert engine.engine is not None  # started (records only) and kept: until a fork
        assert engine.running
        assert not engine.leasing
        engine._suspend()  # what a fork does first: a master keeps no engine
        assert not engine.running
        engine._resumed()

        engine.start()  # the process serves (an adapter's request, a server hook)
        assert engine.leasing
        marks = tmp_path / "marks"
        lines = lambda: marks.read_text().split("\n") if marks.exists() else []  # noqa: E731
        wait_until(lambda: any(line.startswith("done ") and " c " in line for line in lines()))
    finally:
        engine.stop()
        client.close()
        os.environ.pop("PM_MARKS")


def test_flask_any_first_request_starts_the_engine_and_a_failed_start_fails_no_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import flask

    import stepline.flask

    client = stepline.Client("flask-start", is_production=False, environ={})
    functions = process_manager.declare(client)
    app = flask.Flask(__name__)
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "e.db"))
    stepline.flask.serve(app, client, functions, engine=engine)
    try:
        assert not engine.running
        assert app.test_client().get("/no-such-page").status_code == 404
        assert engine.leasing  # a 404 is a request too: the worker serves
    finally:
        engine.stop()
        client.close()

    broken = stepline.Client("flask-broken", is_production=False, environ={})
    app = flask.Flask(__name__)
    functions = process_manager.declare(broken)
    nowhere = EmbeddedEngine(broken, functions, database=str(tmp_path / "file" / "sub" / "e.db"))
    (tmp_path / "file").write_text("a file, not a directory")
    stepline.flask.serve(app, broken, functions, engine=nowhere)
    app.get("/plain")(lambda: "plain")
    with caplog.at_level(logging.ERROR, "stepline.embedded"):
        assert app.test_client().get("/plain").text == "plain"
        assert app.test_client().get("/plain").text == "plain"  # no new try for RETRY s
    assert not nowhere.running
    assert caplog.text.count("the embedded engine could not start") == 1
    broken.close()


def test_tornado_any_first_request_starts_the_engine(tmp_path: Path) -> None:
    import tornado.httpclient
    import tornado.web

    import stepline.tornado

    client = stepline.Client("tornado-start", is_production=False, environ={})
    functions = process_manager.declare(client)
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "e.db"))

    async def main() -> tuple[int, bool]:
        app = tornado.web.Application()
        stepline.tornado.serve(app, client, functions, engine=engine)
        port = free_port()
        server = app.listen(port, address="127.0.0.1")
        try:
            assert not engine.running
            http = tornado.httpclient.AsyncHTTPClient()
            answer = await http.fetch(f"http://127.0.0.1:{port}/nothing", raise_error=False)
            return answer.code, engine.leasing
        finally:
            server.stop()
            await stepline.tornado.shutdown(app)

    try:
        code, leasing = asyncio.run(main())
    finally:
        engine.stop()
        client.close()
    assert code == 404
    assert leasing  # a 404 is a request too


def test_asgi_lifespan_and_aiohttp_startup_start_your_engine(tmp_path: Path) -> None:
    from aiohttp import web

    import stepline.aiohttp
    import stepline.asgi

    async def asgi_startup(app: stepline.asgi.ASGIApp) -> None:
        sent: list[dict[str, str]] = []
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, str]:
            return messages.pop(0)

        async def send(message: dict[str, str]) -> None:
            sent.append(message)

        await app({"type": "lifespan"}, receive, send)
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    async def aiohttp_startup(app: web.Application) -> None:
        runner = web.AppRunner(app)
        await runner.setup()  # runs on_startup
        await runner.cleanup()

    for name in ("asgi", "aiohttp"):
        client = stepline.Client(f"{name}-start", is_production=False, environ={})
        functions = process_manager.declare(client)
        engine = EmbeddedEngine(client, functions, database=str(tmp_path / f"{name}.db"))
        try:
            if name == "asgi":
                asyncio.run(asgi_startup(stepline.asgi.serve(client, functions)))
            else:
                app = web.Application()
                stepline.aiohttp.serve(app, client, functions)
                asyncio.run(aiohttp_startup(app))
            assert engine.leasing, name
        finally:
            engine.stop()
            client.close()
