"""Instrumented step tools: the virtual clock's "now", step mocks and the call log.

A test env serves copies of the app's functions whose handlers hand the user's code
these tools instead of the plain ones. Everything else (the SDK's execution state, the
wire protocol, the engine) is the production path; a function served normally carries
no trace of any of this.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import functools
from collections.abc import Callable
from typing import Any

from stepline._definition.function import Function
from stepline._event import Event
from stepline._execution.call import EXECUTE
from stepline._execution.context import Context, SyncContext
from stepline._execution.step import Duration, Step, SyncStep, _StepTools
from stepline.testing._mailbox import Mailbox
from stepline.testing._mocks import CallLog, Probe, StepMock

Clock = Callable[[], _dt.datetime]


class _Mocking(_StepTools):
    """What both faces add: engine-performed steps (invoke, wait) that a mock replaces."""

    __slots__ = ("_probe",)

    def __init__(self, base: _StepTools, now: Clock, probe: Probe) -> None:
        super().__init__(
            base._state,
            now,
            app_id=base._app_id,
            send=base._send,
            send_sync=base._send_sync,
            step_timeout=base._step_timeout,
        )
        self._probe = probe

    def _invoke(
        self, step_id: str, function_id: str, data: object, timeout: Duration | None, v: str | None
    ) -> Any:
        mock = self._probe.mock(step_id)
        if mock is None:
            return super()._invoke(step_id, function_id, data, timeout, v)
        return self._replaced(step_id, mock, (data,))

    def _wait_for_event(
        self, step_id: str, event: str, if_exp: str | None, timeout: Duration
    ) -> Event | None:
        mock = self._probe.mock(step_id)
        if mock is None:
            return super()._wait_for_event(step_id, event, if_exp, timeout)
        raw = self._replaced(step_id, mock, (), wire=True)
        return None if raw is None else Event.from_wire(raw)

    def _wait_for_signal(self, step_id: str, name: str, timeout: Duration, on_conflict: str) -> Any:
        mock = self._probe.mock(step_id)
        if mock is None:
            return super()._wait_for_signal(step_id, name, timeout, on_conflict)
        return self._replaced(step_id, mock, ())

    def _replaced(
        self, step_id: str, mock: StepMock, args: tuple[Any, ...], *, wire: bool = False
    ) -> Any:
        """A mocked engine step runs as a ``step.run`` whose output is the replacement."""
        state = self._state
        value = state.begin_run(step_id)
        if value is not EXECUTE:
            return value
        with state.executing() as slot:
            out = self._probe.call_sync(step_id, lambda *_: mock.produce(args), args)
            slot.value = out.to_wire() if wire and isinstance(out, Event) else out
        return state.finish_run(slot)


class TestStep(_Mocking, Step):
    """``Step`` for ``async def`` functions under a test env."""

    __test__ = False  # not a pytest test class
    __slots__ = ()

    async def run(
        self,
        step_id: str,
        handler: Callable[..., Any],
        *args: Any,
        output_type: type[Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """``Step.run``, with the call logged and any mock applied."""
        call = functools.partial(self._probe.call_async, step_id, handler)
        wrapped = lambda *a: call(a)  # noqa: E731
        return await super().run(step_id, wrapped, *args, output_type=output_type, timeout=timeout)


class TestSyncStep(_Mocking, SyncStep):
    """``SyncStep`` for plain ``def`` functions under a test env."""

    __test__ = False
    __slots__ = ()

    def run(
        self,
        step_id: str,
        handler: Callable[..., Any],
        *args: Any,
        output_type: type[Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """``SyncStep.run``, with the call logged and any mock applied."""
        call = functools.partial(self._probe.call_sync, step_id, handler)
        wrapped = lambda *a: call(a)  # noqa: E731
        return super().run(step_id, wrapped, *args, output_type=output_type, timeout=timeout)


def instrument(fn: Function, log: CallLog, now: Clock, mailbox: Mailbox | None) -> Function:
    """A copy of ``fn`` (and of its failure handler) whose code gets instrumented steps.

    Args:
        fn: the app's function.
        log: where mocks are found and calls are logged.
        now: the virtual clock (``sleep`` durations count from it).
        mailbox: when given, plain ``def`` functions run on a thread waiting on the env.
    """
    clone = copy.copy(fn)
    if fn.on_failure is not None:
        clone.on_failure = instrument(fn.on_failure, log, now, mailbox)
    original: Any = fn.handler
    function_id = fn.composite_id

    async def async_handler(ctx: Context) -> Any:
        probe = Probe(log, function_id, ctx.run_id, ctx.attempt)
        return await original(dataclasses.replace(ctx, step=TestStep(ctx.step, now, probe)))

    def sync_handler(ctx: SyncContext) -> Any:
        probe = Probe(log, function_id, ctx.run_id, ctx.attempt)
        call = functools.partial(
            original, dataclasses.replace(ctx, step=TestSyncStep(ctx.step, now, probe))
        )
        return call() if mailbox is None else mailbox.run(call)

    clone.handler = async_handler if fn.is_async else sync_handler
    return clone
