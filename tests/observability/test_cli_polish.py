"""The CLI's output, each through the installed command in a real process:
``runs list -f`` with the short id, ``runs show`` saying what a run waits for and
``--watch`` following it, ``send`` printing the runs it started, ``runs cancel`` of an
ended run, and an ended run's steps shown ended, never "Waiting"."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import starlette.applications

import stepline
import stepline.starlette
from stepline.engine import Engine
from stepline.engine._cli import lookups
from stepline.engine._cli import progress as _progress
from stepline.engine._cli.runs import EXIT_ENDED
from stepline.engine._http.api import build_app
from tests._support.cli import Ran, run_stepline
from tests._support.clients import dev_client
from tests._support.engines import fast_settings
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.process]


def stepline_cli(url: str, *args: str) -> Ran:
    """``stepline ARGS --url URL``, in this process (warnings are errors here too)."""
    return run_stepline(*args, "--url", url)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An engine serving two apps, "cli" (hello, waits) and "other" (hello)."""
    engine_server = ServerThread("engine", lifespan="on")
    app_server = ServerThread("app", lifespan="on")
    cli = dev_client("cli", api_base_url=engine_server.url, checkpointing=False)
    other = dev_client("other", api_base_url=engine_server.url, checkpointing=False)

    @cli.function(id="hello", trigger=stepline.TriggerEvent(event="cli/hello"))
    def hello(ctx: stepline.SyncContext) -> str:
        return str(ctx.step.run("greet", lambda: "hello"))

    @cli.function(id="waits", trigger=stepline.TriggerEvent(event="cli/waits"))
    def waits(ctx: stepline.SyncContext) -> None:
        ctx.step.wait_for_event("reply", event="cli/never", timeout="1h")

    @other.function(id="hello", trigger=stepline.TriggerEvent(event="other/hello"))
    def other_hello(ctx: stepline.SyncContext) -> str:
        return "hi"

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await cli.aclose()
        await other.aclose()

    web = starlette.applications.Starlette(lifespan=lifespan)
    stepline.starlette.serve(web, cli, [hello, waits])
    stepline.starlette.serve(web, other, [other_hello], serve_path="/api/other")
    try:
        engine_server.start(
            build_app(Engine(fast_settings(tmp_path_factory.mktemp("polish") / "engine.db")))
        )
        app_server.start(web)
        for path in ("/api/inngest", "/api/other"):
            synced = httpx.post(
                f"{engine_server.url}/v1/apps/sync", json={"url": f"{app_server.url}{path}"}
            )
            assert synced.json()["data"]["ok"] is True
        yield engine_server.url
    finally:
        cli.close()
        other.close()
        engine_server.stop()
        app_server.stop()


def send(url: str, name: str) -> tuple[str, list[str]]:
    """``stepline send``: the event id and the lines under it."""
    done = stepline_cli(url, "send", name)
    assert done.returncode == 0, done.stderr
    event_id, *rest = done.stdout.splitlines()
    return event_id, rest


def show_json(url: str, run_id: str) -> dict[str, Any]:
    done = stepline_cli(url, "runs", "show", run_id, "--json")
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_send_prints_the_runs_the_event_started(engine_url: str) -> None:
    event_id, lines = send(engine_url, "cli/hello")
    assert len(event_id) == 26
    [line] = lines
    assert line.startswith("  started run ")
    assert line.endswith(" (cli-hello)")
    _, nothing = send(engine_url, "cli/nobody-listens")
    assert nothing == [
        "  started no run yet (no function is triggered by it, or a debounce or batch holds it)"
    ]
    sent = json.loads(stepline_cli(engine_url, "send", "cli/hello", "--json").stdout)
    [run] = sent["runs"]
    assert run["function_id"] == "cli-hello"


def test_runs_list_takes_the_short_function_id(engine_url: str) -> None:
    _, [line] = send(engine_url, "cli/waits")
    run_id = line.split()[2]
    listed = stepline_cli(engine_url, "runs", "list", "-f", "waits", "--json")
    assert listed.returncode == 0, listed.stderr
    assert run_id in {r["run_id"] for r in json.loads(listed.stdout)["data"]}
    assert {r["function_id"] for r in json.loads(listed.stdout)["data"]} == {"cli-waits"}
    # "hello" is a function of two apps: the full id is asked for, naming both
    ambiguous = stepline_cli(engine_url, "runs", "list", "-f", "hello")
    assert ambiguous.returncode == 2
    assert "cli-hello, other-hello" in ambiguous.stderr
    assert "full id" in ambiguous.stderr
    full = stepline_cli(engine_url, "runs", "list", "-f", "other-hello", "--json")
    assert full.returncode == 0, full.stderr


def test_runs_list_of_an_unknown_function_is_an_error_naming_close_ids(engine_url: str) -> None:
    typo = stepline_cli(engine_url, "runs", "list", "-f", "wiats")
    assert typo.returncode == 1
    assert typo.stdout == ""
    assert f"no function 'wiats' at {engine_url}: did you mean cli-waits?" in typo.stderr
    full_typo = stepline_cli(engine_url, "runs", "list", "-f", "cli-helo")
    assert full_typo.returncode == 1
    assert "did you mean cli-hello" in full_typo.stderr
    far = stepline_cli(engine_url, "runs", "list", "-f", "zzzzzz")
    assert far.returncode == 1
    assert "registered: cli-hello, cli-waits, other-hello" in far.stderr
    assert "Traceback" not in typo.stderr + full_typo.stderr + far.stderr


def test_unknown_function_names_the_close_ids_for_any_app_id() -> None:
    known = ["my-shop-send-receipt", "my-shop-refund", "billing-charge"]
    error = lookups.unknown_function("send-reciept", known, "http://engine")
    assert (
        str(error)
        == "no function 'send-reciept' at http://engine: did you mean my-shop-send-receipt?"
    )
    empty = lookups.unknown_function("x", [], "http://engine")
    assert "no function is registered: sync your app first" in str(empty)
    assert isinstance(error, stepline.FunctionNotFoundError)


def test_show_says_what_a_run_waits_for_and_watch_follows_it_to_the_end(
    engine_url: str,
) -> None:
    _, [line] = send(engine_url, "cli/waits")
    run_id = line.split()[2]
    wait_until(
        lambda: [s["status"] for s in show_json(engine_url, run_id)["steps"]] == ["Waiting"],
        timeout=20,
        message="the run to wait",
    )
    shown = stepline_cli(engine_url, "runs", "show", run_id)
    assert "Waits     for event cli/never until " in shown.stdout
    assert "(step reply)" in shown.stdout

    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stepline.engine",
            "runs",
            "show",
            run_id,
            "-w",
            "--url",
            engine_url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert watch.stdout is not None
        drawn = []
        for line in watch.stdout:  # the first frame, drawn while the run waits (unbuffered)
            drawn.append(line)
            if line.startswith("Status"):
                break
        assert watch.poll() is None, "--watch returned before the run ended"
        cancelled = stepline_cli(engine_url, "runs", "cancel", run_id)
        assert (cancelled.returncode, cancelled.stdout) == (0, f"{run_id} Cancelled\n")
        # read on through the same buffered file (communicate would skip what it holds)
        out = "".join(drawn) + watch.stdout.read()
        assert watch.stderr is not None
        err = watch.stderr.read()
        watch.wait(20)
    finally:
        watch.kill()
        with watch:  # closes its pipes and reaps it
            pass
    assert watch.returncode == 0, err
    first, last = out.split("\n\n" + f"Run       {run_id}")[0], out.rsplit("Run       ", 1)[1]
    assert "Status    Running" in first
    assert "Waits     for event cli/never" in first
    assert "Status    Cancelled" in last
    assert "Waits" not in last
    # the ended run's waiting step is shown ended, not "Waiting" forever
    [step] = show_json(engine_url, run_id)["steps"]
    assert step["status"] == "Cancelled"
    assert step["ended_at"] is not None

    again = stepline_cli(engine_url, "runs", "cancel", run_id)
    assert again.returncode == EXIT_ENDED == 3
    assert f"run {run_id} had already ended (Cancelled): nothing to cancel" in again.stderr


def test_a_log_line_erases_the_spinner_before_it_is_written() -> None:
    """A log record during a spinner never lands behind a frame on the same line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logger = logging.getLogger("stepline.test.progress")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        progress = _progress.Progress(stream, live=True, interval=0)
        checks = {"n": 0}

        def done() -> bool:
            checks["n"] += 1
            if checks["n"] == 3:
                logger.warning("app http://app unreachable")
            return checks["n"] > 5

        asyncio.run(progress.until("Syncing apps", done))
    finally:
        logger.removeHandler(handler)
    drawn = stream.getvalue()
    before, _, _ = drawn.partition("LOG app http://app unreachable\n")
    assert "Syncing apps" in before, drawn
    # the frame drawn before the record was erased: the log line starts a clean line
    assert before.endswith("\r\x1b[2K"), repr(drawn)
    assert "Syncing apps 1" not in drawn.split("LOG ")[1].split("\n")[0]


def test_send_without_a_name_exits_2(engine_url: str) -> None:
    done = stepline_cli(engine_url, "send", "")
    assert done.returncode == 2
    assert "Event.name must be a non-empty event name" in done.stderr
    assert "Traceback" not in done.stderr
