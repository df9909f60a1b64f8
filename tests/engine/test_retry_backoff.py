"""The retry backoff: Inngest's by default, a short one for local development.

``stepline dev --retry-backoff short`` (or ``STEPLINE_RETRY_BACKOFF=short``) retries a
failed step after 1 s, 2 s, 4 s... instead of the Go executor's 15 s, 30 s, 1 m... plus
up to 30 s of jitter (which Inngest's dev server uses too, so it stays the default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline.engine import ManualClock
from stepline.engine._backoff import INNGEST_TABLE, SHORT_TABLE, Backoff
from stepline.engine._cli import commands
from stepline.engine._config import EngineConfigError, EngineSettings, resolve
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import only_run, quiet, running

from .test_step_state import START, steps_of


def test_inngest_is_the_default_and_short_retries_within_seconds() -> None:
    assert EngineSettings().retry_backoff == "inngest"
    inngest, short = Backoff.named("inngest"), Backoff.named("short")
    assert inngest == Backoff()
    for key in ("a", "b", "c", "d"):
        assert 15.0 <= inngest.delay(0, key) <= 45.0
        assert 1.0 <= short.delay(0, key) <= 2.0
        assert 2.0 <= short.delay(1, key) <= 3.0
    exact = Backoff.named("short", jitter=0.0)
    assert [exact.delay(n, "k") for n in range(9)] == [*SHORT_TABLE, 60.0, 60.0]
    assert Backoff.named("inngest", jitter=0.0).delay(0, "k") == INNGEST_TABLE[0]


def test_the_setting_reads_the_environment_and_refuses_unknown_names() -> None:
    assert resolve(environ={}).retry_backoff == "inngest"
    assert resolve(environ={"STEPLINE_RETRY_BACKOFF": "Short"}).retry_backoff == "short"
    env = {"STEPLINE_RETRY_BACKOFF": "short"}
    assert resolve(environ=env, retry_backoff="inngest").retry_backoff == "inngest"
    with pytest.raises(EngineConfigError, match="retry backoff must be one of inngest, short"):
        resolve(environ={"STEPLINE_RETRY_BACKOFF": "quick"})


def test_stepline_dev_takes_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[EngineSettings] = []

    def engine(settings: EngineSettings) -> Any:
        built.append(settings)
        raise EngineConfigError("built")  # the settings are all this test wants

    monkeypatch.setattr(commands, "Engine", engine)
    monkeypatch.delenv("STEPLINE_RETRY_BACKOFF", raising=False)
    db = str(tmp_path / "engine.db")
    assert commands.main(["dev", "--db", db, "--retry-backoff", "short"]) == 2
    assert commands.main(["dev", "--db", db]) == 2
    assert [s.retry_backoff for s in built] == ["short", "inngest"]
    with pytest.raises(SystemExit):  # a production engine keeps Inngest's timing
        commands.main(["start", "--db", db, "--retry-backoff", "short"])
    capsys.readouterr()


def test_a_failed_step_is_retried_a_second_later(db: str) -> None:
    client = dev_client()

    @client.function(id="shaky", trigger=stepline.TriggerEvent(event="t/shaky"), retries=3)
    def shaky(ctx: stepline.SyncContext) -> str:
        def charge() -> str:
            raise RuntimeError("declined")

        return str(ctx.step.run("charge", charge))

    async def scenario() -> None:
        clock = ManualClock(start=START)
        options = {"retry_scale": 1.0, "retry_backoff": "short"}
        async with running(db, clock=clock, apps=[(client, [shaky])], **options) as engine:
            await engine.send({"name": "t/shaky"})
            run_id = await only_run(engine, "t-shaky")
            await quiet(engine)
            [step] = await steps_of(engine, run_id)
            assert step["attempts"] == 1
            assert step["next_retry_at"] == "2027-01-15T08:00:01.000Z"

    arun(scenario())
