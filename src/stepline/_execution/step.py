"""The step tools, in an async face (``Step``) and a sync face (``SyncStep``).

Both faces share ``_StepTools``; each method of a pair is one pure call plus one call or
await of the user's callable.
"""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from stepline import _errors, _serde
from stepline._event import Event
from stepline._execution import publish as _publish
from stepline._execution import step_timeouts
from stepline._execution.call import EXECUTE, ExecutionState
from stepline._execution.checkpointing import CheckpointFailed
from stepline._protocol import durations
from stepline._protocol import signals as _signal_tokens
from stepline._protocol.opcodes import Opcode, ParallelMode

if TYPE_CHECKING:
    from stepline._definition.function import Function

T = TypeVar("T")
Duration = _dt.timedelta | int | str
Mode = ParallelMode | Literal["wait", "race"]
Send = Callable[[Event | Sequence[Event]], Awaitable[list[str]]]
SendSync = Callable[[Event | Sequence[Event]], list[str]]


class _StepTools:
    """What both faces share: the engine-performed steps, which need no I/O here.

    Args:
        state: the request's execution state.
        now: the clock ``sleep`` counts from.
        app_id: the app whose functions ``invoke_by_id`` names by default.
        send: sends events (``Step.send_event``), e.g. ``client.send``.
        send_sync: its blocking twin (``SyncStep.send_event``), e.g. ``client.send_sync``.
        step_timeout: seconds a ``run`` step's code may take by default (the function's
            ``Timeouts(step=)``); None: no limit.
    """

    __slots__ = ("_app_id", "_now", "_send", "_send_sync", "_state", "_step_timeout")

    def __init__(
        self,
        state: ExecutionState,
        now: Callable[[], _dt.datetime],
        *,
        app_id: str,
        send: Send,
        send_sync: SendSync,
        step_timeout: float | None = None,
    ) -> None:
        self._step_timeout = step_timeout
        self._state = state
        self._now = now
        self._app_id = app_id
        self._send = send
        self._send_sync = send_sync

    def _sleep_until(self, step_id: str, until: _dt.datetime) -> None:
        self._state.op_step(step_id, Opcode.SLEEP, name=durations.format_timestamp(until))

    def _sleep(self, step_id: str, duration: Duration) -> None:
        self._sleep_until(step_id, self._now() + durations.to_timedelta(duration))

    def _wait_for_event(
        self, step_id: str, event: str, if_exp: str | None, timeout: Duration
    ) -> Event | None:
        opts: dict[str, Any] = {"timeout": durations.format_duration(_delta(timeout))}
        if if_exp is not None:
            opts = {"if": if_exp, **opts}
        raw = self._state.op_step(step_id, Opcode.WAIT_FOR_EVENT, name=event, opts=opts)
        return None if raw is None else Event.from_wire(raw)

    def _wait_for_signal(self, step_id: str, name: str, timeout: Duration, on_conflict: str) -> Any:
        if on_conflict not in ("fail", "replace"):
            raise _errors.ConfigError(f"on_conflict is 'fail' or 'replace', got {on_conflict!r}")
        opts = {
            "signal": signal_token(self._state, name),
            "name": name,  # Stepline's engine: the name POST /v1/runs/{id}/signals/{name} uses
            "timeout": durations.format_duration(_delta(timeout)),
            "conflict": on_conflict,
        }
        raw = self._state.op_step(step_id, Opcode.WAIT_FOR_SIGNAL, name=name, opts=opts)
        return raw.get("data") if isinstance(raw, dict) else None

    def _limit(self, timeout: Duration | None) -> float | None:
        if timeout is None:
            return self._step_timeout
        return step_timeouts.seconds(timeout, "step timeout")

    def _invoke(
        self,
        step_id: str,
        function_id: str,
        data: object,
        timeout: Duration | None,
        v: str | None,
    ) -> Any:
        payload = {"data": _serde.to_jsonable(data, what="invoke data"), "v": v}
        opts = {
            "function_id": function_id,
            "payload": payload,
            "timeout": None if timeout is None else durations.format_duration(_delta(timeout)),
        }
        return self._state.op_step(step_id, Opcode.INVOKE, opts=opts)

    def _composite_id(self, function_id: str, app_id: str | None) -> str:
        return f"{app_id or self._app_id}-{function_id}"

    def _persist_sync(self) -> None:
        persist_sync(self._state)

    async def _persist_async(self) -> None:
        await persist_async(self._state)

    def _publisher(self) -> _publish.Publisher:
        return _publish.publisher_of(self._state)


def persist_sync(state: ExecutionState) -> None:
    """Under a checkpointer (a durable endpoint, per-step checkpointing), persist the
    steps completed so far before a new step's code runs (its effects are never seen
    before they are recorded); the last ones go with the call's answer, as do the ones a
    failed checkpoint could not persist. Steps reported with the answer (batched
    checkpointing) are persisted here too, through the call's committer, once they fill
    a call's batch (``ExecutionState.take_due``)."""
    checkpointer = state.checkpointer or state.committer
    if checkpointer is not None and (done := state.take_due()):
        try:
            checkpointer.flush_sync(done)
        except CheckpointFailed:
            state.answer_with(done)


async def persist_async(state: ExecutionState) -> None:
    """Async twin of ``persist_sync``."""
    checkpointer = state.checkpointer or state.committer
    if checkpointer is not None and (done := state.take_due()):
        try:
            await checkpointer.flush_async(done)
        except CheckpointFailed:
            state.answer_with(done)


def commit_sync(state: ExecutionState) -> None:
    """Commit every step this call completed and has not persisted, now, whatever the
    function's checkpointing: for a step that must never run again once it ran (a model
    request a crash would pay for twice, a tool's side effect). Called right after the
    step's ``finish_run``, before any code after it runs.

    The checkpointer (per-step checkpointing, durable endpoints) or else the call's
    ``committer`` (steps otherwise reported with the answer) has the engine commit them;
    with neither (no checkpointing), or when the engine refuses, the call answers now,
    with them, and the engine calls again.
    """
    done = state.take_done()
    if not done:
        return  # reported already: the call is answering with it
    checkpointer = state.checkpointer or state.committer
    if checkpointer is None:
        state.answer_with(done)
    try:
        checkpointer.flush_sync(done)
    except CheckpointFailed:
        state.answer_with(done)


async def commit_async(state: ExecutionState) -> None:
    """Async twin of ``commit_sync``."""
    done = state.take_done()
    if not done:
        return
    checkpointer = state.checkpointer or state.committer
    if checkpointer is None:
        state.answer_with(done)
    try:
        await checkpointer.flush_async(done)
    except CheckpointFailed:
        state.answer_with(done)


def time_limit(tools: Step | SyncStep, timeout: Duration | None) -> float | None:
    """The seconds a step run by ``tools`` may take: ``timeout`` when given, else the
    function's ``Timeouts(step=)`` (None: no limit), as ``step.run`` resolves it."""
    return tools._limit(timeout)


def signal_token(state: ExecutionState, name: str) -> str:
    """The token of the signal ``name`` for ``state``'s run: an HMAC of the run id and the
    name under the app's signing key (``ctx.signal_token``; the key a wait waits under)."""
    if not isinstance(name, str) or not 0 < len(name) <= 128 or "\x00" in name:
        raise _errors.ConfigError(f"a signal name is 1-128 characters, got {name!r}")
    key = _publish.publisher_of(state).connection.settings.signing_key
    return _signal_tokens.token(key, state.request.ctx.run_id, name)


def _delta(value: Duration) -> _dt.timedelta:
    try:
        return durations.to_timedelta(value)
    except (TypeError, ValueError) as exc:
        raise _errors.ConfigError(f"invalid duration {value!r}: {exc}") from None


class Step(_StepTools):
    """Step tools for ``async def`` functions; every method returns an awaitable."""

    __slots__ = ()

    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[..., Awaitable[T]],
        *args: Any,
        output_type: type[T] | None = None,
        timeout: Duration | None = None,
    ) -> T: ...
    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[..., T],
        *args: Any,
        output_type: type[T] | None = None,
        timeout: Duration | None = None,
    ) -> T: ...
    async def run(
        self,
        step_id: str,
        handler: Callable[..., Any],
        *args: Any,
        output_type: type[Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Run ``handler(*args)`` once, durably; replays return the recorded value.

        Args:
            step_id: unique within the function (repeats are numbered automatically).
            handler: a sync or async callable.
            *args: positional arguments for ``handler``.
            output_type: a type (e.g. a pydantic model) to rebuild the JSON value into.
            timeout: how long one attempt may take (default: the function's
                ``Timeouts(step=)``); past it async code is cancelled, sync code abandoned,
                and the attempt fails with ``StepTimeoutError`` (retries apply).
        """
        value = self._state.begin_run(step_id, output_type)
        if value is not EXECUTE:
            return value
        limit = self._limit(timeout)
        await self._persist_async()  # a durable endpoint: earlier steps first
        with self._state.executing() as slot:
            slot.value = await step_timeouts.call_async(step_id, handler, args, limit)
        return self._state.finish_run(slot)

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Pause the function for ``duration`` (timedelta, milliseconds or ``"1h"``)."""
        self._sleep(step_id, duration)

    async def sleep_until(self, step_id: str, until: _dt.datetime) -> None:
        """Pause the function until ``until``."""
        self._sleep_until(step_id, until)

    async def wait_for_event(
        self, step_id: str, *, event: str, timeout: Duration, if_exp: str | None = None
    ) -> Event | None:
        """Wait for an event named ``event`` (matching ``if_exp``); ``None`` on timeout."""
        return self._wait_for_event(step_id, event, if_exp, timeout)

    async def wait_for_signal(
        self, step_id: str, *, signal: str, timeout: Duration, on_conflict: str = "fail"
    ) -> Any:
        """Wait for the signal ``signal`` to this run; its data, or ``None`` on timeout.

        Send it with ``client.get_run(run_id).signal(signal, data)``, ``POST
        /v1/runs/{run_id}/signals/{signal}``, or hand ``ctx.signal_token(signal)`` to an
        outside system, which completes the step with ``POST /v1/signals/hooks/{token}``
        (no other credential). A signal completes the wait once; a second is refused.

        Args:
            step_id: unique within the function (repeats are numbered automatically).
            signal: the signal's name in this run, 1-128 characters.
            timeout: how long to wait (timedelta, milliseconds or ``"3d"``).
            on_conflict: when another step of this run already waits for ``signal``:
                ``"fail"`` this step (``StepError``) or ``"replace"`` the other's wait.

        Example:
            >>> approval = await ctx.step.wait_for_signal("approval", signal="approved",
            ...                                           timeout="3d")
        """
        return self._wait_for_signal(step_id, signal, timeout, on_conflict)

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function,
        data: object = None,
        timeout: Duration | None = None,
        v: str | None = None,
    ) -> Any:
        """Run another function of this app as a child and return its result."""
        return self._invoke(step_id, function.composite_id, data, timeout, v)

    async def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: object = None,
        timeout: Duration | None = None,
        v: str | None = None,
    ) -> Any:
        """Invoke a function by its local id, in this app or (with ``app_id``) another."""
        composite = self._composite_id(function_id, app_id)
        return self._invoke(step_id, composite, data, timeout, v)

    async def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """Send events as a step, so a replay does not send them again."""
        ids: list[str] = await self.run(step_id, self._send, events)
        return ids

    async def publish(self, step_id: str, *, topic: str, data: object) -> int:
        """Publish ``data`` on the run's stream ``topic`` as a step: once per run.

        The step posts the message to the engine under the step's id, so a retry of a
        step whose answer was lost stores nothing new; a replay returns the recorded
        sequence number and publishes nothing. Messages queued with ``ctx.publish``
        before it are sent first. Readers get it through ``handle.stream(...)``.

        Args:
            step_id: unique within the function (repeats are numbered automatically).
            topic: 1-128 characters of letters, digits and ``_ . : / -``.
            data: any value a step may return (pydantic models and dataclasses too).

        Returns:
            The message's sequence number in the run's stream.

        Raises:
            ConfigError: an invalid topic.

        The step fails (``StepError`` once it is final) if ``data`` is over
        ``max_stream_message_bytes`` or the engine cannot store it (not a Stepline
        engine: only Stepline's engine has run streams).

        Example:
            >>> await ctx.step.publish("report-ready", topic="progress", data={"done": 10})
        """
        _publish.check_topic(topic)
        value = self._state.begin_run(step_id)
        if value is EXECUTE:
            await self._persist_async()
            with self._state.executing() as slot:
                publisher = self._publisher()
                message = publisher.durable_message(slot.hashed_id, topic, data)
                slot.value = await publisher.post_durable_async(message)
            value = self._state.finish_run(slot)
        return _publish.seq_of(value)

    async def parallel(
        self, callables: Sequence[Callable[[], Awaitable[T]]], *, mode: Mode = "wait"
    ) -> tuple[T, ...]:
        """Run the steps in ``callables`` in parallel; returns their results in order."""
        with self._state.parallel(ParallelMode(mode)) as group:
            for callable_ in callables:
                with group.branch():
                    group.outputs.append(await callable_())
        return tuple(group.outputs)


class SyncStep(_StepTools):
    """Step tools for plain ``def`` functions; every method returns its value."""

    __slots__ = ()

    def run(
        self,
        step_id: str,
        handler: Callable[..., T],
        *args: Any,
        output_type: type[T] | None = None,
        timeout: Duration | None = None,
    ) -> T:
        """Run ``handler(*args)`` once, durably; replays return the recorded value.

        Args:
            step_id: unique within the function (repeats are numbered automatically).
            handler: a plain callable (use ``Step`` in ``async def`` functions).
            *args: positional arguments for ``handler``.
            output_type: a type (e.g. a pydantic model) to rebuild the JSON value into.
            timeout: how long one attempt may take (default: the function's
                ``Timeouts(step=)``); past it the code (run on a thread of its own) is
                abandoned and the attempt fails with ``StepTimeoutError``.
        """
        value = self._state.begin_run(step_id, output_type)
        if value is not EXECUTE:
            return value  # type: ignore[no-any-return]
        limit = self._limit(timeout)
        self._persist_sync()  # a durable endpoint: earlier steps first
        state = self._state
        slot = state.start_executing()  # ``executing``, unwrapped: a step's code runs here
        try:
            out = step_timeouts.call_sync(step_id, handler, args, limit)
            slot.value = _no_awaitable(out, step_id)
        except BaseException as exc:
            state.executed(slot, exc)
            raise
        state.executed(slot, None)
        return state.finish_run(slot)  # type: ignore[no-any-return]

    def sleep(self, step_id: str, duration: Duration) -> None:
        """Pause the function for ``duration`` (timedelta, milliseconds or ``"1h"``)."""
        self._sleep(step_id, duration)

    def sleep_until(self, step_id: str, until: _dt.datetime) -> None:
        """Pause the function until ``until``."""
        self._sleep_until(step_id, until)

    def wait_for_event(
        self, step_id: str, *, event: str, timeout: Duration, if_exp: str | None = None
    ) -> Event | None:
        """Wait for an event named ``event`` (matching ``if_exp``); ``None`` on timeout."""
        return self._wait_for_event(step_id, event, if_exp, timeout)

    def wait_for_signal(
        self, step_id: str, *, signal: str, timeout: Duration, on_conflict: str = "fail"
    ) -> Any:
        """Wait for the signal ``signal`` to this run; see ``Step.wait_for_signal``."""
        return self._wait_for_signal(step_id, signal, timeout, on_conflict)

    def invoke(
        self,
        step_id: str,
        *,
        function: Function,
        data: object = None,
        timeout: Duration | None = None,
        v: str | None = None,
    ) -> Any:
        """Run another function of this app as a child and return its result."""
        return self._invoke(step_id, function.composite_id, data, timeout, v)

    def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: object = None,
        timeout: Duration | None = None,
        v: str | None = None,
    ) -> Any:
        """Invoke a function by its local id, in this app or (with ``app_id``) another."""
        composite = self._composite_id(function_id, app_id)
        return self._invoke(step_id, composite, data, timeout, v)

    def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """Send events as a step, so a replay does not send them again."""
        return self.run(step_id, self._send_sync, events)

    def publish(self, step_id: str, *, topic: str, data: object) -> int:
        """Publish ``data`` on the run's stream ``topic`` as a step; see ``Step.publish``."""
        _publish.check_topic(topic)
        value = self._state.begin_run(step_id)
        if value is EXECUTE:
            self._persist_sync()
            with self._state.executing() as slot:
                publisher = self._publisher()
                message = publisher.durable_message(slot.hashed_id, topic, data)
                slot.value = publisher.post_durable_sync(message)
            value = self._state.finish_run(slot)
        return _publish.seq_of(value)

    def parallel(
        self, callables: Sequence[Callable[[], T]], *, mode: Mode = "wait"
    ) -> tuple[T, ...]:
        """Run the steps in ``callables`` in parallel; returns their results in order."""
        with self._state.parallel(ParallelMode(mode)) as group:
            for callable_ in callables:
                with group.branch():
                    group.outputs.append(callable_())
        return tuple(group.outputs)


#: Return types no awaitable has: checked with one lookup (``isawaitable`` is an ABC check).
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None), tuple, bytes})


def _no_awaitable(value: T, step_id: str) -> T:
    if type(value) in _PLAIN:
        return value
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it so Python does not warn
        raise _errors.ConfigError(
            f'step "{step_id}" returned an awaitable in a sync function; '
            "use an async function (and ctx.step) to run async callables"
        )
    return value
