"""``stepline send`` and ``stepline runs list|show|cancel`` against a real engine over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import starlette.applications

import stepline
import stepline.starlette
from stepline.engine import Engine
from stepline.engine._cli import progress as _progress
from stepline.engine._cli.commands import main
from stepline.engine._http.api import build_app
from tests._support import refusing
from tests._support.clients import closing_client, dev_client
from tests._support.engines import fast_settings
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.slow]


class Stack:
    """An engine and an app, each served over HTTP by uvicorn in this process."""

    def __init__(self, engine_url: str) -> None:
        self.url = engine_url

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main([*args, "--url", self.url])
        out, err = capsys.readouterr()
        return code, out, err

    def cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
        code, out, err = self.cli(capsys, *args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    engine_server = ServerThread("engine", lifespan="on")
    app_server = ServerThread("app", lifespan="on")
    client = dev_client("cli", api_base_url=engine_server.url, checkpointing=False)

    @client.function(id="hello", trigger=stepline.TriggerEvent(event="cli/hello"))
    def hello(ctx: stepline.SyncContext) -> dict[str, Any]:
        name = ctx.step.run("greet", lambda: f"hello {ctx.event.data.get('who', 'you')}")
        return {"text": name}

    @client.function(id="waits", trigger=stepline.TriggerEvent(event="cli/waits"))
    def waits(ctx: stepline.SyncContext) -> None:
        ctx.step.wait_for_event("reply", event="cli/never", timeout="1h")

    web = starlette.applications.Starlette()
    stepline.starlette.serve(web, client, [hello, waits])
    try:
        engine_server.start(build_app(Engine(fast_settings(tmp_path / "engine.db"))))
        app_server.start(closing_client(web, client))
        synced = httpx.post(
            f"{engine_server.url}/v1/apps/sync", json={"url": f"{app_server.url}/api/inngest"}
        )
        assert synced.json()["data"]["ok"] is True
        yield Stack(engine_server.url)
    finally:
        client.close()
        engine_server.stop()
        app_server.stop()


def wait_for_status(
    stack: Stack, capsys: pytest.CaptureFixture[str], run_id: str, status: str
) -> dict[str, Any]:
    def shown() -> dict[str, Any] | None:
        found: dict[str, Any] = stack.cli_json(capsys, "runs", "show", run_id)
        return found if found["status"] == status else None

    found: dict[str, Any] = wait_until(
        shown, timeout=20, interval=0.05, message=f"run {run_id} to be {status}"
    )
    return found


def test_send_then_list_show_and_cancel_runs(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = stack.cli(capsys, "send", "cli/hello", "--data", '{"who": "cli"}')
    assert code == 0, err
    event_id, started = out.splitlines()
    assert len(event_id) == 26  # a ULID
    assert started.endswith(" (cli-hello)")  # the run it started

    [run] = stack.cli_json(capsys, "runs", "list", "--function", "cli-hello")["data"]
    shown = wait_for_status(stack, capsys, run["run_id"], "Completed")
    assert shown["output"] == {"text": "hello cli"}
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [("greet", "Completed")]

    code, out, _ = stack.cli(capsys, "runs", "show", run["run_id"])
    assert code == 0
    assert f"Run       {run['run_id']}" in out
    assert "Status    Completed" in out
    assert 'Output    {"text": "hello cli"}' in out
    assert "greet" in out
    assert "StepRun" in out

    sent = stack.cli_json(capsys, "send", "cli/waits")
    assert len(sent["ids"]) == 1
    listed = stack.cli_json(capsys, "runs", "list", "--function", "cli-waits")["data"]
    [waiting] = listed
    wait_for_status(stack, capsys, waiting["run_id"], "Running")

    code, out, _ = stack.cli(capsys, "runs", "list")
    table = out.splitlines()
    assert table[0].split() == ["RUN", "ID", "FUNCTION", "STATUS", "CREATED", "DURATION"]
    assert {line.split()[0] for line in table[1:]} == {run["run_id"], waiting["run_id"]}

    code, out, _ = stack.cli(capsys, "runs", "cancel", waiting["run_id"])
    assert (code, out) == (0, f"{waiting['run_id']} Cancelled\n")
    code, out, _ = stack.cli(capsys, "runs", "list", "--status", "cancelled")
    assert waiting["run_id"] in out
    assert run["run_id"] not in out
    code, out, _ = stack.cli(capsys, "runs", "list", "-s", "completed", "-s", "cancelled")
    assert waiting["run_id"] in out
    assert run["run_id"] in out


def test_errors_exit_non_zero(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = stack.cli(capsys, "runs", "show", "01NOSUCHRUN000000000000000")
    assert code == 1
    assert "not found" in err
    code, _, err = stack.cli(capsys, "send", "cli/hello", "--data", "[1]")
    assert code == 2
    assert "JSON object" in err
    code, _, err = stack.cli(capsys, "send", "inngest/reserved")
    assert code == 1
    assert "reserved" in err
    with pytest.raises(SystemExit) as exited:
        main(["runs", "list", "--status", "sleepy"])
    assert exited.value.code == 2
    capsys.readouterr()
    dead = main(["runs", "list", "--url", refusing.url()])
    assert dead == 1
    assert "unreachable" in capsys.readouterr().err


@pytest.mark.process
def test_the_installed_command_runs(stack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    env["STEPLINE_API_BASE_URL"] = stack.url  # the engine URL from the environment
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "stepline.engine", "runs", "list", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"data": [], "next_cursor": None}


def test_progress_draws_a_spinner_on_a_terminal_only() -> None:
    ticks = iter(range(1000))

    def clock() -> float:
        return next(ticks) / 10

    async def scenario(live: bool) -> str:
        stream = io.StringIO()
        progress = _progress.Progress(stream, live=live, interval=0, clock=clock)
        state = {"checks": 0}

        def done() -> bool:
            state["checks"] += 1
            if state["checks"] == 3:
                progress.line("  ✓ http://app synced")
            return state["checks"] > 4

        await progress.until("Syncing apps", done, detail=lambda: f"{state['checks']}/2")
        assert await progress.track("Opening the database", asyncio.sleep(0, "db")) == "db"
        return stream.getvalue()

    drawn = asyncio.run(scenario(live=True))
    assert "⠋ Syncing apps 1/2" in drawn
    assert "⠙ Syncing apps 2/2" in drawn
    assert "\r\x1b[2K  ✓ http://app synced\n" in drawn
    assert "✓ Syncing apps (" in drawn
    assert "✓ Opening the database (" in drawn
    assert asyncio.run(scenario(live=False)) == "  ✓ http://app synced\n"
    assert _progress.frame("Starting", 1.25, 11, "1/3") == "⠙ Starting 1/3 (1.2s)"
    assert _progress.finished("Starting", 2, ok=False) == "✗ Starting (2.0s)"


def test_runs_list_filters_by_attributes_and_show_prints_them(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    client = dev_client("cli", api_base_url=stack.url)
    try:
        gold = client.start_sync("hello", {}, attributes={"tier": "gold", "region": "eu"})
        silver = client.start_sync("hello", {}, attributes={"tier": "silver", "region": "eu"})
    finally:
        client.close()
    listed = stack.cli_json(capsys, "runs", "list", "--attr", "region=eu")["data"]
    assert {r["run_id"] for r in listed} == {gold.run_id, silver.run_id}
    listed = stack.cli_json(capsys, "runs", "list", "--attr", "region=eu", "--attr", "tier=gold")
    assert [r["run_id"] for r in listed["data"]] == [gold.run_id]
    assert listed["data"][0]["attributes"] == {"region": "eu", "tier": "gold"}
    code, out, _ = stack.cli(capsys, "runs", "show", gold.run_id)
    assert code == 0
    assert "Attrs     region=eu, tier=gold" in out
    with pytest.raises(SystemExit):
        stack.cli(capsys, "runs", "list", "--attr", "no-equals")
