"""``stepline mcp``: the engine's REST API as MCP tools, driven by the ``mcp`` package's own
client over stdio.

A production engine (signing key) serves in a thread; ``stepline mcp`` runs as the child
process an assistant would start. Read-only by default (the write tools are not offered,
and calling one is an error); ``--allow-writes`` adds them; a missing or wrong key is the
tool's error, naming the key to pass, and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from stepline._mcp import tools
from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.processes import clean_env
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

SIGNING_KEY = "signkey-prod-" + "beef" * 16
READ = sorted(t.name for t in tools.READ)
WRITE = sorted(t.name for t in tools.WRITE)
APP = {
    "url": "http://127.0.0.1:9/api/inngest",  # refuses connections: runs stay live
    "appName": "mcp",
    "framework": "test",
    "sdk": "py:test",
    "v": "0.1",
    "deployType": "ping",
    "functions": [
        {
            "id": "mcp-fn",
            "name": "fn",
            "triggers": [{"event": "mcp/x"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": "http://127.0.0.1:9/api/inngest"},
                }
            },
        }
    ],
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A production engine's URL, and the id of a live run of its one function."""
    settings = EngineSettings(
        mode="start",
        database_url=str(tmp_path_factory.mktemp("mcp") / "e.db"),
        signing_keys=(SIGNING_KEY,),
        event_keys=("mcp-event-key",),
        poll_interval=0.05,
    )
    server = ServerThread("engine")
    server.start(build_app(Engine(settings)))
    try:
        auth = {"authorization": signing.bearer_token(SIGNING_KEY)}
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:
            assert http.post("/fn/register", json=APP).status_code == 200
            started = http.post("/v1/functions/mcp-fn/runs", json={"data": {"n": 1}})
            assert started.status_code == 201, started.text
        yield server.url, started.json()["data"]["run_id"]
    finally:
        server.stop()


def _session(url: str, *flags: str, key: str | None = SIGNING_KEY) -> StdioServerParameters:
    env = clean_env(**({"STEPLINE_SIGNING_KEY": key} if key else {}))
    args = ["-m", "stepline.engine", "mcp", "--url", url, *flags]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=Path.cwd())


async def _calls(params: StdioServerParameters, *calls: tuple[str, dict[str, Any]]) -> Any:
    """The tools the server lists, and each call's ``(is_error, text)``."""
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        started = await session.initialize()
        read_only = "--allow-writes" not in params.args
        assert ("offered only when the server is started with --allow-writes" in
                (started.instructions or "")) is read_only  # fmt: skip
        listed = sorted(tool.name for tool in (await session.list_tools()).tools)
        answers = []
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            text = "".join(getattr(block, "text", "") for block in result.content)
            answers.append((bool(result.is_error), text))
        return listed, answers


def test_read_only_by_default(engine: tuple[str, str]) -> None:
    url, run_id = engine
    listed, answers = asyncio.run(
        _calls(
            _session(url),
            ("list_functions", {}),
            ("list_runs", {"function_id": "mcp-fn"}),
            ("show_run", {"run_id": run_id}),
            ("run_steps", {"run_id": run_id}),
            ("run_errors", {"run_id": run_id}),
            ("list_events", {"limit": 5}),
            ("function_metrics", {"function_id": "mcp-fn", "window": "1h"}),
            ("cancel_run", {"run_id": run_id}),
            ("replay_run", {"run_id": run_id}),
            ("show_run", {"run_id": run_id}),
            ("show_run", {"run_id": "01NOSUCHRUN0000000000000000"}),
        )
    )
    assert listed == READ
    assert not set(WRITE) & set(listed)
    functions, runs, run, steps, errors, events, metrics, cancel, replay, after, unknown = answers
    assert not functions[0]
    assert json.loads(functions[1])["data"][0]["function_id"] == "mcp-fn"
    assert [r["run_id"] for r in json.loads(runs[1])["data"]] == [run_id]
    assert json.loads(run[1])["data"]["status"] in ("Queued", "Running")
    for answer in (steps, errors, events, metrics):
        assert not answer[0], answer
    assert cancel[0]
    assert "cancel_run" in cancel[1]
    assert replay[0]
    assert "replay_run" in replay[1]
    # refused before any REST call: the run is as it was, and no replay was started
    assert json.loads(after[1])["data"]["status"] in ("Queued", "Running")
    assert unknown[0]
    assert "not found" in unknown[1]


def test_write_tools_need_allow_writes(engine: tuple[str, str]) -> None:
    url, run_id = engine
    listed, answers = asyncio.run(
        _calls(
            _session(url, "--allow-writes"),
            ("pause_function", {"function_id": "mcp-fn", "reason": "maintenance"}),
            ("resume_function", {"function_id": "mcp-fn"}),
            ("signal_run", {"run_id": run_id, "name": "approved", "data": {"ok": True}}),
            ("cancel_run", {"run_id": run_id}),
            ("show_run", {"run_id": run_id}),
            ("replay_run", {"run_id": run_id}),
        )
    )
    assert listed == sorted(READ + WRITE)
    paused, resumed, signal, cancelled, shown, replayed = answers
    assert json.loads(paused[1])["data"]["paused"]["reason"] == "maintenance"
    assert json.loads(resumed[1])["data"]["paused"] is None
    assert signal[0]  # the run waits for no signal: the engine's 404, as the tool's error
    assert "approved" in signal[1] or "waiting" in signal[1]
    assert json.loads(cancelled[1])["data"] == {"run_id": run_id, "status": "Cancelled"}
    assert json.loads(shown[1])["data"]["status"] == "Cancelled"
    assert not replayed[0], replayed
    assert json.loads(replayed[1])["data"]["run_id"] != run_id  # a new run, from the start


@pytest.mark.parametrize("key", [None, "signkey-prod-" + "0bad" * 16])
def test_a_missing_or_wrong_key_is_a_tool_error_naming_the_key(
    engine: tuple[str, str], key: str | None
) -> None:
    url, _ = engine
    listed, answers = asyncio.run(
        _calls(_session(url, key=key), ("list_runs", {}), ("list_functions", {}))
    )
    assert listed == READ
    for failed, text in answers:
        assert failed
        assert "401" in text
        assert "STEPLINE_SIGNING_KEY" in text


def test_without_the_mcp_package_it_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stepline import _extras
    from stepline.engine._cli import commands

    real = _extras.missing
    monkeypatch.setattr(_extras, "missing", lambda names: "mcp" if "mcp" in names else real(names))
    assert commands.main(["mcp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "stepline mcp needs the mcp package, which is not installed: pip install 'stepline[mcp]'"
    ]
