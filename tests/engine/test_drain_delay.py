"""The drain before a stop: the setting, when it ends, and what ``/ready`` answers meanwhile.

The rolling deploy behind haproxy (``tests/faults/test_pg_rolling_deploy.py``) shows it
working with real processes; here the pieces, without a server.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._config import DRAIN_DELAY_START, EngineConfigError, resolve
from stepline.engine._http import draining
from stepline.engine._http.api import build_app
from tests._support.aio import arun

KEY = "signkey-prod-" + "ab" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_delay_defaults_to_10_s_for_start_and_0_for_dev_and_reads_the_environment() -> None:
    start = {"STEPLINE_SIGNING_KEY": KEY, "STEPLINE_EVENT_KEY": "e"}
    assert DRAIN_DELAY_START == 10.0
    assert resolve(mode="start", environ=start).drain_delay == DRAIN_DELAY_START
    assert resolve(environ={}).drain_delay == 0.0
    assert EngineSettings().drain_delay == 0.0  # embedded: the host owns the listener
    env = {**start, "STEPLINE_DRAIN_DELAY": "2.5"}
    assert resolve(mode="start", environ=env).drain_delay == 2.5
    assert resolve(mode="start", environ=env, drain_delay=0.0).drain_delay == 0.0  # the flag


@pytest.mark.parametrize("text", ["-1", "soon", "nan"])
def test_a_bad_delay_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(EngineConfigError, match="STEPLINE_DRAIN_DELAY must be a number"):
        resolve(environ={"STEPLINE_DRAIN_DELAY": text})


def test_a_drain_lasts_its_delay_under_traffic_and_ends_after_a_quiet_second() -> None:
    clock = Clock()
    drain = draining.Drain(clock)
    drain.arrived("/e/key")
    clock.now += 0.5
    drain.begin()
    assert drain.draining
    assert not drain.over(10.0)
    for _ in range(15):  # a request every 0.5 s: traffic still comes
        clock.now += 0.5
        drain.arrived("/v1/runs/r")
        drain.arrived("/ready")  # probes are not traffic
    assert clock.now - 100.0 == 8.0
    assert not drain.over(10.0)
    clock.now += 0.5
    drain.arrived("/ready")
    drain.arrived("/health")
    assert not drain.over(10.0)  # half a second without traffic
    clock.now += draining.QUIET - 0.5
    assert drain.over(10.0)  # a quiet second: traffic has moved away


def test_a_drain_under_steady_traffic_ends_at_its_delay() -> None:
    clock = Clock()
    drain = draining.Drain(clock)
    drain.begin()
    for _ in range(19):
        clock.now += 0.5
        drain.arrived("/e/key")
        assert not drain.over(10.0)
    clock.now += 0.5
    assert drain.over(10.0)
    assert drain.over(0.0)


def test_ready_answers_503_draining_and_answers_close_their_connection(tmp_path: Path) -> None:
    settings = EngineSettings(database_url=str(tmp_path / "engine.db"))
    drain = draining.Drain()
    app = build_app(Engine(settings), drain=drain)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            before = await http.get("/health")
            assert before.status_code == 200
            assert "close" not in before.headers.get("connection", "")
            drain.begin()
            answer = await http.get("/ready")
            assert answer.status_code == 503
            assert answer.json() == {
                "status": "draining",
                "reason": "the engine is stopping: send requests to another node",
            }
            assert answer.headers["connection"] == "close"
            served = await http.get("/health")  # every other route is still served
            assert served.status_code == 200
            assert served.headers["connection"] == "close"

    arun(scenario())
