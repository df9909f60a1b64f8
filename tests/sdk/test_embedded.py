"""``EmbeddedEngine``: lazy start, stop and restart, fork, several processes on one file, mounts."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import werkzeug.middleware.dispatcher
import werkzeug.test
import werkzeug.wrappers

import stepline
from stepline import RunStatus
from stepline.embedded import ORIGIN, EmbeddedEngine
from tests._support.engines import FAST
from tests._support.polling import wait_until
from tests.apps import run_management
from tests.apps.run_management import EVENT_KEY, SIGNING_KEY

from .embedded_support import poll


@pytest.fixture
def database(tmp_path: Path) -> str:
    return str(tmp_path / "embedded.db")


def test_lazy_start_stop_and_start_again(database: str) -> None:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:
        assert not embedded.running
        assert "stopped" in repr(embedded)
        assert app.client.settings.api_base_url == ORIGIN
        assert app.client.settings.event_api_base_url == ORIGIN
        assert not Path(database).exists(), "nothing happens before the first use"

        handle = app.client.start_sync(app.order, {"x": 1})
        assert embedded.running
        assert "running" in repr(embedded)
        assert handle.result(timeout=20) == {"n": 2, "x": 1}
        first_engine = embedded.engine
        assert first_engine.settings.mode == "dev"
        assert first_engine.settings.poll_interval == FAST["poll_interval"]

        token = uuid.uuid4().hex
        waiting = app.client.start_sync(app.waiter, {"token": token})
        poll(lambda: [s for s in waiting.steps() if s.status == "Waiting"])
        embedded.stop()
        assert not embedded.running
        embedded.stop()  # twice is fine

        # the next use starts it again, on the same file: the parked run is still there
        app.client.send_sync(stepline.Event(name="shop/go", data={"token": token, "value": 3}))
        assert embedded.running
        assert embedded.engine is not first_engine
        assert waiting.result(timeout=20) == 3

        async def from_a_loop() -> Any:
            handle = await app.client.start(app.order, {"x": "async"})
            try:
                return await handle.result(timeout=20)
            finally:
                await app.client.aclose()

        assert asyncio.run(from_a_loop()) == {"n": 2, "x": "async"}
        embedded.start()  # explicit start while running: nothing to do
        assert embedded.running
    finally:
        embedded.stop()


def test_stop_answers_waiting_callers_with_a_management_error(database: str) -> None:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    handle = app.client.start_sync(app.sleeper)
    poll(handle.steps)
    outcomes: dict[str, BaseException | None] = {}

    def wait_sync() -> None:
        try:
            handle.result()
            outcomes["sync"] = None
        except BaseException as exc:
            outcomes["sync"] = exc

    async def wait_async() -> None:
        try:
            await app.client.get_run(handle.run_id).result()
            outcomes["async"] = None
        except BaseException as exc:
            outcomes["async"] = exc

    threads = [
        threading.Thread(target=wait_sync),
        threading.Thread(target=lambda: asyncio.run(wait_async())),
    ]
    for thread in threads:
        thread.start()
    # both are parked in a long-poll once the engine has two waiters: the blocking caller
    # on its own thread, the async one in a request on the engine's loop
    running = embedded._running
    assert running is not None
    poll(lambda: embedded.engine._waiters.count == 2 and len(running.calls) == 1)
    embedded.stop()
    for thread in threads:
        thread.join(10)
    assert set(outcomes) == {"sync", "async"}
    for error in outcomes.values():
        assert type(error) is stepline.ManagementError, repr(error)
        assert "the embedded engine stopped" in str(error)


def test_an_engine_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = run_management.build()
    embedded = EmbeddedEngine(
        app.client, app.functions, database=str(blocker / "sub" / "e.db"), **FAST
    )
    with pytest.raises(stepline.ManagementError, match="could not start"):
        app.client.start_sync(app.order)
    assert not embedded.running
    with pytest.raises(OSError, match="Not a directory"):
        embedded.start()


def test_an_engine_slower_to_start_than_its_wait_says_so(database: str) -> None:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:
        # a new file's schema takes far longer than a microsecond to make
        with pytest.raises(TimeoutError, match=r"did not start within 1e-06 s: give start") as err:
            embedded.start(timeout=1e-6)
        assert database in str(err.value)
        wait_until(lambda: embedded.running, timeout=20, message="the engine went on starting")
        handle = app.client.start_sync(app.order, {"x": 1})
        assert handle.result(timeout=20) == {"n": 2, "x": 1}
    finally:
        embedded.stop()


# -- fork -----------------------------------------------------------------------------


def _child(embedded: EmbeddedEngine, app: run_management.App) -> dict[str, Any]:
    """In the forked child: what it sees and does."""
    seen: dict[str, Any] = {"running_after_fork": embedded.running}
    handle = app.client.start_sync(app.order, {"x": "child"})
    seen["result"] = handle.result(timeout=30)
    seen["run_id"] = handle.run_id
    seen["running"] = embedded.running
    seen["pid"] = os.getpid()
    embedded.stop()
    return seen


def _read_line(fd: int, timeout: float) -> bytes:
    """One line from a pipe (bounded wait); b"" if it closed."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"nothing from the other process in {timeout}s: {line!r}")
        chunk = os.read(fd, 1)
        if not chunk:
            return line
        line += chunk
    return line


def _forked(
    child: Callable[[Callable[[str], None]], dict[str, Any]],
    on_message: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Fork; the child runs ``child(say)`` and always leaves through ``os._exit``.

    ``say(message)`` in the child calls ``on_message(message)`` in the parent; what
    ``child`` returns comes back as the report.
    """
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking with threads running: that is what is tested
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)

            def say(message: str) -> None:
                os.write(write, (json.dumps({"message": message}) + "\n").encode())

            report = child(say)
            os.write(write, (json.dumps({"report": report}) + "\n").encode())
            code = 0
        except BaseException as exc:
            os.write(write, (json.dumps({"report": {"error": repr(exc)}}) + "\n").encode())
        finally:
            os._exit(code)
    os.close(write)
    report: dict[str, Any] = {}
    try:
        while line := _read_line(read, 40):
            said = json.loads(line)
            if "report" in said:
                report = said["report"]
                break
            on_message(said["message"])
    finally:
        os.close(read)

        def reaped() -> tuple[int, int] | None:
            ended = os.waitpid(pid, os.WNOHANG)
            return ended if ended[0] else None

        try:
            ended = wait_until(reaped, timeout=20, message=f"process {pid} to exit")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            ended = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(ended[1]) == 0, report
    return report


@pytest.mark.process
def test_a_forked_child_starts_its_own_engine(database: str) -> None:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:
        assert app.client.start_sync(app.order, {"x": "before"}).result(timeout=20)
        parent_thread = embedded._thread.ident if embedded._thread else None
        for attempt in range(3):
            # fork while the parent's engine is busy with runs of its own
            busy = [app.client.start_sync(app.order, {"x": f"busy-{i}"}) for i in range(3)]
            report = _forked(lambda say: _child(embedded, app))
            assert report["running_after_fork"] is False, "the parent's thread is not the child's"
            assert report["running"] is True
            assert report["pid"] != os.getpid()
            assert report["result"] == {"n": 2, "x": "child"}, attempt
            # the parent still works, and sees the child's run in the shared file
            assert embedded.running
            assert (embedded._thread.ident if embedded._thread else None) == parent_thread
            assert [h.result(timeout=20)["x"] for h in busy] == ["busy-0", "busy-1", "busy-2"]
            child_run = app.client.get_run_sync(report["run_id"]).describe()
            assert child_run.status is RunStatus.COMPLETED
            assert child_run.output == {"n": 2, "x": "child"}
        after = app.client.start_sync(app.order, {"x": "after"})
        assert after.result(timeout=20) == {"n": 2, "x": "after"}
    finally:
        embedded.stop()


@pytest.mark.process
def test_a_child_forked_before_first_use_starts_lazily(database: str) -> None:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:
        report = _forked(
            lambda say: _child(embedded, app)
        )  # like gunicorn --preload: the parent never used it
        assert report["result"] == {"n": 2, "x": "child"}
        assert not embedded.running
        assert app.client.get_run_sync(report["run_id"]).result(timeout=20) == report["result"]
    finally:
        embedded.stop()


@pytest.mark.process
def test_the_parent_stopping_leaves_the_childs_file_alone(database: str) -> None:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:
        assert app.client.start_sync(app.order, {"x": "parent"}).result(timeout=20)
        go_read, go_write = os.pipe()

        def child(say: Callable[[str], None]) -> dict[str, Any]:
            first = app.client.start_sync(app.order, {"x": "first"})
            first.result(timeout=30)
            say("stop now")
            assert _read_line(go_read, 30) == b"stopped\n"
            # the parent has closed the file; SQLite must not have taken it from under us
            second = app.client.start_sync(app.order, {"x": "second"})
            second.result(timeout=30)
            embedded.stop()
            return {"runs": [first.run_id, second.run_id]}

        def on_message(message: str) -> None:
            assert message == "stop now"
            embedded.stop()
            os.write(go_write, b"stopped\n")

        try:
            report = _forked(child, on_message)
        finally:
            os.close(go_read)
            os.close(go_write)
        for run_id in report["runs"]:  # what the child wrote is in the file
            assert app.client.get_run_sync(run_id).status() is RunStatus.COMPLETED
    finally:
        embedded.stop()


# -- several processes on one file ----------------------------------------------------


@pytest.mark.process
def test_worker_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    database, trace = str(tmp_path / "shared.db"), str(tmp_path / "trace.jsonl")
    workers, runs = 3, 6
    context = multiprocessing.get_context("spawn")
    outs = [str(tmp_path / f"out-{i}.json") for i in range(workers)]
    everyone_done = context.Barrier(workers)
    processes = [
        context.Process(
            target=run_management.worker, args=(database, trace, out, runs, everyone_done)
        )
        for out in outs
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(50)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    assert [p.exitcode for p in processes] == [0] * workers

    results: dict[str, Any] = {}
    for out in outs:
        with open(out, encoding="utf-8") as file:
            reported = json.load(file)
        assert not set(reported["results"]) & set(results), "two workers report one run"
        results.update(reported["results"])
    assert len(results) == workers * runs
    assert set(results.values()) == {3}, results

    executions = collections.Counter()
    with open(trace, encoding="utf-8") as file:
        for line in file:
            entry = json.loads(line)
            executions[(entry["run"], entry["step"])] += 1
    twice = {key: count for key, count in executions.items() if count != 1}
    assert not twice, f"steps ran more than once: {twice}"
    assert set(executions) == {(r, s) for r in results for s in ("one", "two", "three")}

    # the file agrees: each run completed, once
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:
        listed, cursor = app.client.list_runs_sync(function=app.traced, limit=500)
        assert cursor is None
        assert sorted(r.run_id for r in listed) == sorted(results)
        assert {(r.status, r.output) for r in listed} == {(RunStatus.COMPLETED, 3)}
    finally:
        embedded.stop()


# -- mounts -----------------------------------------------------------------------------


@pytest.fixture
def dev_engine(database: str) -> Any:
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    yield app, embedded
    embedded.stop()


def test_asgi_mount_serves_the_engine_api(dev_engine: Any) -> None:
    app, embedded = dev_engine
    done = app.client.start_sync(app.order, {"x": "asgi"})
    done.result(timeout=20)
    mounted = embedded.asgi_app()

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=mounted)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            health = await http.get("/health")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            assert health.headers["x-inngest-server-kind"] == "dev"
            assert health.headers["content-length"] == str(len(health.content))
            runs = await http.get("/v1/runs", params={"function_id": "shop-order"})
            assert runs.status_code == 200
            assert done.run_id in [r["run_id"] for r in runs.json()["data"]]
            one = await http.get(f"/v1/runs/{done.run_id}")
            assert one.json()["data"]["status"] == "Completed"
            started = await http.post("/v1/functions/shop-order/runs", json={"data": {"x": 9}})
            assert started.status_code == 201
            assert started.json()["data"]["created"] is True
            missing = await http.get("/v1/runs/nope")
            assert missing.status_code == 404
            assert "not found" in missing.json()["error"]
        # under a prefix (Starlette's Mount keeps it in path and sets root_path)
        prefixed = httpx.ASGITransport(app=mounted, root_path="/engine")
        async with httpx.AsyncClient(transport=prefixed, base_url="http://localhost") as http:
            health = await http.get("/engine/health")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            runs = await http.get("/engine/v1/runs")
            assert done.run_id in [r["run_id"] for r in runs.json()["data"]]

    asyncio.run(scenario())


def test_wsgi_mount_serves_the_engine_api(dev_engine: Any) -> None:
    app, embedded = dev_engine
    done = app.client.start_sync(app.order, {"x": "wsgi"})
    done.result(timeout=20)
    client = werkzeug.test.Client(embedded.wsgi_app())
    health = client.get("/health")
    assert (health.status_code, health.get_json()) == (200, {"status": "ok"})
    assert health.headers["x-inngest-server-kind"] == "dev"
    runs = client.get("/v1/runs?function_id=shop-order")
    assert done.run_id in [r["run_id"] for r in runs.get_json()["data"]]
    started = client.post("/v1/functions/shop-order/runs", json={"data": {"x": 1}})
    assert started.status == "201 Created"
    run_id = started.get_json()["data"]["run_id"]
    assert app.client.get_run_sync(run_id).result(timeout=20) == {"n": 2, "x": 1}
    assert client.get("/v1/runs/nope").status == "404 Not Found"

    fallback = werkzeug.wrappers.Response("the app", status=200)
    mounted = werkzeug.middleware.dispatcher.DispatcherMiddleware(
        fallback, {"/engine": embedded.wsgi_app()}
    )
    under = werkzeug.test.Client(mounted)
    assert under.get("/engine/health").get_json() == {"status": "ok"}
    assert done.run_id in [r["run_id"] for r in under.get("/engine/v1/runs").get_json()["data"]]
    assert under.get("/elsewhere").get_data() == b"the app"


def test_the_api_is_not_mounted_for_a_production_client(database: str) -> None:
    app = run_management.build(is_production=True, signing_key=SIGNING_KEY, event_key=EVENT_KEY)
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    with pytest.raises(stepline.ConfigError, match="expose_api=True"):
        embedded.asgi_app()
    with pytest.raises(stepline.ConfigError, match="expose_api=True"):
        embedded.wsgi_app()
    assert not embedded.running

    keyless = run_management.build("keyless", is_production=True, signing_key=SIGNING_KEY)
    exposed_keyless = EmbeddedEngine(
        keyless.client, keyless.functions, database=database, expose_api=True
    )
    with pytest.raises(stepline.ConfigError, match="event key"):
        exposed_keyless.wsgi_app()


def test_an_exposed_production_engine_checks_keys(database: str) -> None:
    app = run_management.build(is_production=True, signing_key=SIGNING_KEY, event_key=EVENT_KEY)
    embedded = EmbeddedEngine(app.client, app.functions, database=database, expose_api=True, **FAST)
    try:
        client = werkzeug.test.Client(embedded.wsgi_app())
        assert client.get("/health").status_code == 200
        refused = client.get("/v1/runs")
        assert refused.status_code == 401
        assert "signing key" in refused.get_json()["error"]
        bearer = {"Authorization": f"Bearer {SIGNING_KEY}"}
        assert client.get("/v1/runs", headers=bearer).status_code == 200
        assert client.post("/e/wrong", json={"name": "shop/order"}).status_code == 401
        sent = client.post(f"/e/{EVENT_KEY}", json={"name": "shop/order", "data": {"x": 5}})
        assert sent.status_code == 200
        assert embedded.engine.settings.mode == "start"
    finally:
        embedded.stop()


@pytest.mark.process
def test_a_parent_whose_file_is_gone_after_a_fork_stops_its_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=str(folder / "e.db"), **FAST)
    try:
        assert app.client.start_sync(app.order, {"x": "before"}).result(timeout=20)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()  # the reopen after the fork fails: an unreadable file, a removed folder
        with caplog.at_level(logging.ERROR, logger="stepline"):
            report = _forked(lambda say: {"pid": os.getpid()})
            assert report["pid"] != os.getpid()
            # one line that says what happened, and the engine stops: no worker left
            # failing on a closed store every second for the life of the process
            # the engine's thread ended (``running``): nothing of it can log after this
            wait_until(lambda: not embedded.running, timeout=20)
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1, lines
        assert "cannot reopen its database after this process forked" in lines[0]
    finally:
        embedded.stop()
