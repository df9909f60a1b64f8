"""``TestRun``: one run in a ``TestEnv``, seen from the test.

Each blocking method is the twin of the async method above it, as in ``TestEnv``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from stepline._api.runs import (
    RunCancelledError,
    RunFailedError,
    RunInfo,
    RunNotFoundError,
    RunStatus,
    StepInfo,
)
from stepline._api.signals import SignalAlreadyReceivedError, SignalNotWaitingError
from stepline._api.streams import StreamMessage
from stepline.engine import NotFoundError
from stepline.engine._model import Run
from stepline.testing._host import EngineHost

T = TypeVar("T")


class Bound(Protocol):
    """Awaits ``work`` for at most ``timeout`` real seconds (default: the env's)."""

    def __call__(
        self, work: Awaitable[T], what: str, timeout: float | None = None, /
    ) -> Awaitable[T]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Runner:
    """What a ``TestRun`` needs of its env, and nothing more.

    Attributes:
        host: the engine and its loop (``call`` from async code, ``call_sync`` from a thread).
        finish: the time keeper's wait for a run to end, with the env's auto-skip.
        bound: the env's limit on real time, raising ``RunTimeoutError`` past it.
        settle: the env's ``settle``: until nothing can happen without time moving.
    """

    host: EngineHost
    finish: Callable[[str], Awaitable[Run]]
    bound: Bound
    settle: Callable[[], Awaitable[None]]


class TestRun:
    """One run in a ``TestEnv``; every method has a blocking twin ending in ``_sync``.

    Attributes:
        run_id: the run's id.
    """

    __test__ = False

    def __init__(self, runner: Runner, run_id: str) -> None:
        self._runner = runner
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"<stepline.testing.TestRun {self.run_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TestRun) and (other._runner.host, other.run_id) == (
            self._runner.host,
            self.run_id,
        )

    def __hash__(self) -> int:
        return hash(self.run_id)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to end and return its output (time skips while waiting, if auto).

        Args:
            timeout: real seconds to wait (default: the env's ``timeout``).

        Raises:
            RunFailedError: the run failed (``.error`` has its final error).
            RunCancelledError: the run was cancelled.
            RunWaitingError: it cannot end unless time moves, and auto-skip is off.
            RunTimeoutError: it did not end within ``timeout`` real seconds.
        """
        return _output(await self._runner.host.call(functools.partial(self._finish, timeout)))

    def result_sync(self, timeout: float | None = None) -> Any:
        """Blocking twin of ``result``."""
        return _output(self._runner.host.call_sync(functools.partial(self._finish, timeout)))

    async def describe(self) -> RunInfo:
        """The run as it is now (time does not move)."""
        return await self._runner.host.call(self._describe)

    def describe_sync(self) -> RunInfo:
        """Blocking twin of ``describe``."""
        return self._runner.host.call_sync(self._describe)

    async def steps(self) -> list[StepInfo]:
        """The run's steps so far, in order (time does not move)."""
        return await self._runner.host.call(self._steps)

    def steps_sync(self) -> list[StepInfo]:
        """Blocking twin of ``steps``."""
        return self._runner.host.call_sync(self._steps)

    async def cancel(self) -> RunStatus:
        """Cancel the run; returns its status afterwards (an ended run keeps its own)."""
        return await self._runner.host.call(self._cancel)

    def cancel_sync(self) -> RunStatus:
        """Blocking twin of ``cancel``."""
        return self._runner.host.call_sync(self._cancel)

    async def signal(self, name: str, data: Any = None) -> None:
        """Send the signal ``name`` to the run's ``step.wait_for_signal``, as
        ``RunHandle.signal`` would; first waits until nothing more can happen without time
        moving (as ``TestEnv.settle``), so a run just started has reached its wait.

        Raises:
            SignalNotWaitingError: nothing in the run waits for ``name``.
            SignalAlreadyReceivedError: its wait for ``name`` already ended.
        """
        await self._runner.host.call(functools.partial(self._signal, name, data))

    def signal_sync(self, name: str, data: Any = None) -> None:
        """Blocking twin of ``signal``."""
        self._runner.host.call_sync(functools.partial(self._signal, name, data))

    async def stream(self, topic: str | None = None) -> list[StreamMessage]:
        """The messages the run published (on ``topic``, if given), in order.

        Waits until nothing more can happen without time moving (as ``TestEnv.settle``;
        time does not move), then reads the run's whole stream as the engine stored it:
        what ``RunHandle.stream`` and the web kit's events route would deliver.
        """
        return await self._runner.host.call(functools.partial(self._stream, topic))

    def stream_sync(self, topic: str | None = None) -> list[StreamMessage]:
        """Blocking twin of ``stream``."""
        return self._runner.host.call_sync(functools.partial(self._stream, topic))

    # -- on the engine's loop -----------------------------------------------------------------

    async def _finish(self, timeout: float | None) -> RunInfo:
        await self._describe()  # a missing run is RunNotFoundError, not a timeout
        finish = self._runner.finish(self.run_id)
        return _info(await self._runner.bound(finish, f"run {self.run_id} had not ended", timeout))

    async def _describe(self) -> RunInfo:
        try:
            return _info(await self._runner.host.engine.get_run(self.run_id))
        except NotFoundError as exc:
            raise RunNotFoundError(str(exc), status=404) from None

    async def _steps(self) -> list[StepInfo]:
        from stepline.engine._http import views

        await self._describe()
        records = await self._runner.host.engine.run_steps(self.run_id)
        return [StepInfo.from_wire(views.step(record)) for record in records]

    async def _stream(self, topic: str | None) -> list[StreamMessage]:
        from stepline.engine._streams.service import StreamService

        await self._describe()
        await self._runner.settle()
        streams = StreamService.of(self._runner.host.engine)
        found: list[StreamMessage] = []
        after = 0
        while True:
            page = await streams.page(self.run_id, after, topic, _PAGE)
            found.extend(
                _message(item.seq, item.topic, item.data, item.published_at)
                for item in page.messages
            )
            if not page.messages:  # a page is bounded by bytes too: a short one is not the end
                return found
            after = page.next

    async def _signal(self, name: str, data: Any) -> None:
        from stepline.engine._control import signal_delivery
        from stepline.engine._control.signals import SignalConflict

        await self._runner.settle()
        try:
            await signal_delivery.to_run(self._runner.host.engine, self.run_id, name, data)
        except NotFoundError as exc:
            raise SignalNotWaitingError(str(exc), status=404) from None
        except SignalConflict as exc:
            raise SignalAlreadyReceivedError(str(exc), status=409) from None

    async def _cancel(self) -> RunStatus:
        await self._describe()
        await self._runner.host.engine.cancel(self.run_id)
        return (await self._describe()).status


def _info(run: Run) -> RunInfo:
    from stepline.engine._http import views

    return RunInfo.from_wire(views.run(run))


_PAGE = 1000


def _message(seq: int, topic: str, data: str, at: float) -> StreamMessage:
    wire = {"seq": seq, "topic": topic, "data": json.loads(data), "at": at}
    return StreamMessage.from_wire(wire)


def _output(info: RunInfo) -> Any:
    """What ``result`` answers for an ended run (as ``RunHandle.result`` does)."""
    if info.status is RunStatus.FAILED:
        raise RunFailedError(info)
    if info.status is RunStatus.CANCELLED:
        raise RunCancelledError(info)
    return info.output
