"""A worker never makes a call again that it is still making.

A lease lapses when its heartbeat is late (a loaded machine, a slow database). The job then
comes due again and the next lease transaction takes it, as it should for a job another,
dead node held. For a job this worker is still calling, a second call would run the step
a second time, after (or while) the first call's answer is recorded. The worker keeps the
lease it just renewed and leaves the call in flight to answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stepline.engine import Engine, EngineSettings, ManualClock, RunStatus
from tests._support.engines import finished
from tests._support.stub_server import StubServer

from .test_protocol_stub import SDK
from .test_versions import FN, body, calls

pytestmark = [pytest.mark.slow]


@pytest.fixture
def slow_stub() -> Iterator[tuple[StubServer, threading.Event]]:
    release = threading.Event()
    stub = StubServer()

    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        release.wait(20)
        return 200, "done", SDK

    stub.answer = answer
    stub.start()
    yield stub, release
    release.set()
    stub.stop()


def test_a_lapsed_lease_of_a_call_in_flight_is_not_called_again(
    tmp_path: Any, slow_stub: tuple[StubServer, threading.Event]
) -> None:
    stub, release = slow_stub

    async def main() -> tuple[int, RunStatus]:
        clock = ManualClock(1_800_000_000.0)
        settings = EngineSettings(
            database_url=str(tmp_path / "engine.db"), lease_seconds=30.0, poll_interval=0.05
        )  # the heartbeat beats every 10 s of real time: never within this test
        engine = Engine(settings, clock=clock)
        await engine.start()
        try:
            await engine.register(body(stub, None))
            run_id, _ = await engine.start_function(FN, {})
            for _ in range(500):
                if calls(stub):
                    break
                await asyncio.sleep(0.01)
            clock.set(clock.now() + 100.0)  # the call's lease has lapsed
            for _ in range(10):  # the worker's loop leases what is due, more than once
                engine.worker.wake.set()
                await asyncio.sleep(0.05)
            made = calls(stub)
            release.set()
            run = await finished(engine, run_id)
            return made, run.status
        finally:
            release.set()
            await engine.stop()

    made, status = asyncio.run(main())
    assert made == 1
    assert status is RunStatus.COMPLETED
