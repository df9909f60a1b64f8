"""Step mocks and the log of step calls: what a test replaces, and what it can assert on."""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable
from typing import Any

#: ``returns=`` was not given (``None`` is a value a step may return).
UNSET: Any = object()


@dataclasses.dataclass(frozen=True, slots=True)
class StepCall:
    """One execution of a step's code (or of its mock); replays of memoized steps are not calls.

    Attributes:
        function_id: the function's composite id (``"app-fn"``).
        step: the step id the function's code gave (``ctx.step.run("charge", ...)`` → ``"charge"``).
        args: the positional arguments passed to the step's callable (for a mocked
            ``invoke``, ``(data,)``; for ``send_event``, ``(events,)``).
        run_id: the run it belongs to.
        attempt: the 0-based attempt of the request that ran it.
        mocked: True when a mock produced the outcome instead of the step's code.
        output: what it returned (None if it raised).
        error: what it raised, if it did.
    """

    function_id: str
    step: str
    args: tuple[Any, ...]
    run_id: str
    attempt: int
    mocked: bool
    output: Any = None
    error: BaseException | None = None


class StepMock:
    """The replacement of one step of one function, for one test env.

    Create it with ``TestEnv.mock_step``. Exactly one of ``returns``, ``raises`` and
    ``handler`` applies, on every execution of the step (every attempt, every run).

    Attributes:
        function_id: the function's composite id.
        step: the step id it replaces.
    """

    def __init__(
        self,
        log: CallLog,
        function_id: str,
        step: str,
        *,
        returns: Any = UNSET,
        raises: BaseException | type[BaseException] | None = None,
        handler: Callable[..., Any] | None = None,
    ) -> None:
        given = (returns is not UNSET) + (raises is not None) + (handler is not None)
        if given != 1:
            raise TypeError("mock_step takes exactly one of returns=, raises= and handler=")
        self._log = log
        self.function_id = function_id
        self.step = step
        self._returns = returns
        self._raises = raises
        self._handler = handler

    def __repr__(self) -> str:
        return f"<StepMock {self.function_id}:{self.step}>"

    @property
    def calls(self) -> list[StepCall]:
        """The executions this mock replaced so far."""
        return [c for c in self._log.calls(self.function_id, self.step) if c.mocked]

    @property
    def call_count(self) -> int:
        """How many executions this mock replaced so far."""
        return len(self.calls)

    def produce(self, args: tuple[Any, ...]) -> Any:
        """The replacement outcome: the value (or awaitable) to use, or the raised error."""
        if self._raises is not None:
            raise self._raises
        if self._handler is not None:
            return self._handler(*args)
        return self._returns


class CallLog:
    """The mocks of a test env and every step call made under it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mocks: dict[tuple[str, str], StepMock] = {}
        self._calls: list[StepCall] = []

    def add_mock(self, mock: StepMock) -> None:
        """Install ``mock``, replacing any earlier mock of the same step."""
        with self._lock:
            self._mocks[(mock.function_id, mock.step)] = mock

    def mock(self, function_id: str, step: str) -> StepMock | None:
        """The mock of a step, if there is one."""
        with self._lock:
            return self._mocks.get((function_id, step))

    def record(self, call: StepCall) -> None:
        """Append one call."""
        with self._lock:
            self._calls.append(call)

    def calls(self, function_id: str | None = None, step: str | None = None) -> list[StepCall]:
        """The calls so far, in the order they ended, filtered by function and step id."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (function_id is None or c.function_id == function_id)
                and (step is None or c.step == step)
            ]


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """What instrumented step tools know about the request they serve."""

    log: CallLog
    function_id: str
    run_id: str
    attempt: int

    def mock(self, step: str) -> StepMock | None:
        """The mock of ``step`` in this function, if any."""
        return self.log.mock(self.function_id, step)

    def call_sync(self, step: str, handler: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """Run the step's callable (or its mock) and log the call."""
        mock = self.mock(step)
        try:
            value = mock.produce(args) if mock is not None else handler(*args)
        except Exception as exc:
            self._record(step, args, mock, error=exc)
            raise
        self._record(step, args, mock, output=value)
        return value

    async def call_async(
        self, step: str, handler: Callable[..., Any], args: tuple[Any, ...]
    ) -> Any:
        """Async twin of ``call_sync``: the callable (or mock) may return an awaitable."""
        mock = self.mock(step)
        try:
            value = mock.produce(args) if mock is not None else handler(*args)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            self._record(step, args, mock, error=exc)
            raise
        self._record(step, args, mock, output=value)
        return value

    def _record(
        self,
        step: str,
        args: tuple[Any, ...],
        mock: StepMock | None,
        *,
        output: Any = None,
        error: BaseException | None = None,
    ) -> None:
        call = StepCall(
            self.function_id,
            step,
            args,
            self.run_id,
            self.attempt,
            mocked=mock is not None,
            output=output,
            error=error,
        )
        self.log.record(call)
