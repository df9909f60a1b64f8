"""The pytest plugin, loaded as users load it, in a child pytest."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import stepline
from tests._support.clients import dev_client

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

USER_TESTS = """
import datetime as dt

import pytest

import stepline

client = stepline.Client(app_id="plugin", is_production=False)


@client.function(id="nap", trigger=stepline.TriggerEvent(event="t/nap"))
async def nap(ctx: stepline.Context) -> str:
    await ctx.step.sleep("nap", dt.timedelta(days=1))
    return "rested"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_sync(stepline_env) -> None:
    env = stepline_env(client, [nap])
    assert env.start_sync(nap).result_sync() == "rested"


@pytest.mark.anyio
async def test_async(stepline_env) -> None:
    env = stepline_env(client, [nap], auto_skip=False)
    run = await env.start(nap)
    await env.advance(86400)
    assert await run.result() == "rested"


def test_the_env_was_closed() -> None:
    assert client.settings.api_base_url != "http://stepline.testing"
"""


def test_the_plugin_is_registered_as_an_entry_point() -> None:
    entry = '[project.entry-points.pytest11]\nstepline = "stepline.testing.plugin"\n'
    assert entry in PYPROJECT.read_text()


@pytest.mark.process
def test_stepline_env_in_sync_and_async_user_tests(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    installed = any(
        ep.value == "stepline.testing.plugin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    load = [] if installed else ["-p", "stepline.testing.plugin"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", *load],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_fixture_closes_every_env_it_made(stepline_env: object) -> None:
    client = dev_client("fixture")

    @client.function(id="f", trigger=stepline.TriggerEvent(event="t/f"))
    def f(ctx: stepline.SyncContext) -> int:
        return 1

    make = stepline_env
    assert callable(make)
    env = make(client, [f])
    assert env.start_sync(f).result_sync() == 1
    with pytest.raises(stepline.ConfigError, match="two test envs"):
        make(client, [f])
