"""``TestRun``: one run in a ``TestEnv``, seen from the test.

Each blocking method is the twin of the async method above it, as in ``TestEnv``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from stepline._runs import (
    RunCancelledError,
    RunFailedError,
    RunInfo,
    RunNotFoundError,
    RunStatus,
    StepInfo,
)
from stepline.engine import NotFoundError
from stepline.engine._model import Run

if TYPE_CHECKING:
    from stepline.testing._env import TestEnv


class TestRun:
    """One run in a ``TestEnv``; every method has a blocking twin ending in ``_sync``.

    Attributes:
        run_id: the run's id.
    """

    __test__ = False

    def __init__(self, env: TestEnv, run_id: str) -> None:
        self._env = env
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"<stepline.testing.TestRun {self.run_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TestRun) and (other._env, other.run_id) == (self._env, self.run_id)

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
        return _output(await self._env._call(functools.partial(self._finish, timeout)))

    def result_sync(self, timeout: float | None = None) -> Any:
        """Blocking twin of ``result``."""
        return _output(self._env._call_sync(functools.partial(self._finish, timeout)))

    async def describe(self) -> RunInfo:
        """The run as it is now (time does not move)."""
        return await self._env._call(self._describe)

    def describe_sync(self) -> RunInfo:
        """Blocking twin of ``describe``."""
        return self._env._call_sync(self._describe)

    async def steps(self) -> list[StepInfo]:
        """The run's steps so far, in order (time does not move)."""
        return await self._env._call(self._steps)

    def steps_sync(self) -> list[StepInfo]:
        """Blocking twin of ``steps``."""
        return self._env._call_sync(self._steps)

    async def cancel(self) -> RunStatus:
        """Cancel the run; returns its status afterwards (an ended run keeps its own)."""
        return await self._env._call(self._cancel)

    def cancel_sync(self) -> RunStatus:
        """Blocking twin of ``cancel``."""
        return self._env._call_sync(self._cancel)

    # -- on the engine's loop -----------------------------------------------------------------

    async def _finish(self, timeout: float | None) -> RunInfo:
        env = self._env
        await self._describe()  # a missing run is RunNotFoundError, not a timeout
        finish = env._keeper().finish(self.run_id, auto_skip=env.auto_skip)
        return _info(await env._bounded(finish, f"run {self.run_id} had not ended", timeout))

    async def _describe(self) -> RunInfo:
        try:
            return _info(await self._env.engine.get_run(self.run_id))
        except NotFoundError as exc:
            raise RunNotFoundError(str(exc), status=404) from None

    async def _steps(self) -> list[StepInfo]:
        from stepline.engine import _views

        await self._describe()
        records = await self._env.engine.run_steps(self.run_id)
        return [StepInfo.from_wire(_views.step(record)) for record in records]

    async def _cancel(self) -> RunStatus:
        await self._describe()
        await self._env.engine.cancel(self.run_id)
        return (await self._describe()).status


def _info(run: Run) -> RunInfo:
    from stepline.engine import _views

    return RunInfo.from_wire(_views.run(run))


def _output(info: RunInfo) -> Any:
    """What ``result`` answers for an ended run (as ``RunHandle.result`` does)."""
    if info.status is RunStatus.FAILED:
        raise RunFailedError(info)
    if info.status is RunStatus.CANCELLED:
        raise RunCancelledError(info)
    return info.output
