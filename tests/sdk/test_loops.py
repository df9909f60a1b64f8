"""The engine's event loop: uvloop when it is installed (the ``engine`` extra), asyncio's
own otherwise; the embedded engine's thread and ``stepline dev|start`` run on it."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

import stepline
from stepline import _loops
from stepline.embedded import EmbeddedEngine


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_dev_install_has_uvloop() -> None:
    # the engine extra brings it (CPython, not Windows): the tests below run on it
    assert importlib.util.find_spec("uvloop") is not None
    assert _loops.kind() == "uvloop"


def test_run_runs_on_uvloop_when_it_is_installed() -> None:
    assert _loops.run(_loop_module()).startswith("uvloop")


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_loops, "_uvloop", lambda: None)
    assert _loops.kind() == "asyncio"
    assert _loops.run(_loop_module()).startswith("asyncio")


def test_the_embedded_engine_runs_its_loop_on_uvloop(tmp_path: Path) -> None:
    client = stepline.Client("loops", is_production=False, environ={})

    @client.function(id="one", trigger=stepline.TriggerEvent(event="t/one"), retries=0)
    def one(ctx: stepline.SyncContext) -> object:
        return ctx.step.run("a", lambda: 1)

    engine = EmbeddedEngine(client, [one], database=str(tmp_path / "e.db"))
    engine.start()
    try:
        assert client.execute_sync(one, {}, timeout=30) == 1
        running = engine._running
        assert running is not None
        assert type(running.loop).__module__.startswith("uvloop")
    finally:
        engine.stop()
        client.close()
