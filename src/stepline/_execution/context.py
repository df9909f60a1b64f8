"""What a function receives: the event(s), run metadata, the step tools and a logger."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from stepline._api.attributes import AttributeValue, set_flow
from stepline._event import Event
from stepline._execution.call import ExecutionState
from stepline._execution.publish import publisher_of
from stepline._execution.step import Step, SyncStep, signal_token


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """Passed to ``async def`` functions.

    Attributes:
        event: the triggering event (the first one for a batch).
        events: every triggering event (more than one with ``batch_events``).
        run_id: this run's id.
        attempt: 0-based attempt of the current request.
        step: the step tools; every method is awaited.
        logger: a logger that stays quiet while memoized steps replay.
    """

    event: Event
    events: list[Event]
    run_id: str
    attempt: int
    step: Step
    logger: logging.LoggerAdapter[logging.Logger]
    #: the call's execution state (patches, replay, the call's publisher)
    _state: ExecutionState = dataclasses.field(repr=False, compare=False)

    @property
    def dry_run(self) -> bool:
        """True while a deploy check or ``TestEnv.replay`` replays this run from its record.

        Every recorded step is answered from the record and no step's code runs; code
        outside steps runs as on any replay, with the network refused. Skip such code's
        side effects when this is True (better still, put them in a step).
        """
        return self._state.dry_run

    def patched(self, change_id: str) -> bool:
        """Whether this run takes the new branch of a code change (not awaited).

        True for a run that reaches this point for the first time on code that has the
        patch, False for a run that recorded progress past it on older code. The answer
        is recorded as a step (``patched:<change_id>``), so it never flips for a run.
        Plain (not ``async``) on both faces: it does no I/O of its own, and a forgotten
        ``await`` would make ``if ctx.patched(...)`` always true.

        Args:
            change_id: names the change; unique within the function.

        Example:
            >>> if ctx.patched("send-receipt"):
            ...     await ctx.step.run("receipt", send_receipt)
        """
        return self._state.patched(change_id)

    def deprecate_patch(self, change_id: str) -> None:
        """Retire ``patched(change_id)`` once no run that could take the old branch is live.

        Replace the ``if ctx.patched(...)`` with the new branch and this call: runs that
        recorded the patch's answer still replay without a non-determinism notice.
        Records nothing. Remove it too once those runs have ended.
        """
        self._state.deprecate_patch(change_id)

    async def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Set searchable attributes on this run (name -> string, number or boolean).

        Not a step: the engine keeps them at once, and while the function re-runs code
        that ran in an earlier request (replay) the call does nothing. Find runs by them
        with ``client.list_runs(attributes=...)``, the CLI (``--attr``) or the dashboard.

        Raises:
            ManagementError: a bad name or value, or more than 32 attributes on the run.

        Example:
            >>> await ctx.set_attributes({"customer": order["customer_id"], "plan": "pro"})
        """
        if not self._state.is_rerunning:
            connection = publisher_of(self._state).connection
            await connection.run_async(set_flow(connection.settings, self.run_id, attributes))

    def signal_token(self, name: str) -> str:
        """This run's token for the signal ``name``: hand it to an outside system.

        ``POST /v1/signals/hooks/{token}`` (no other credential; the body is the data)
        then completes ``step.wait_for_signal(..., signal=name)``. The token is an HMAC
        of the run id and the name under the app's signing key: the same on every replay
        (not a step; plain on both faces), unguessable without the key, and checked by
        the engine. In dev mode, with no signing key, anyone who knows the run id can
        compute it.

        Example:
            >>> url = f"{engine_url}/v1/signals/hooks/{ctx.signal_token('approved')}"
        """
        return signal_token(self._state, name)

    def publish(self, topic: str, data: object) -> None:
        """Publish ``data`` on the run's stream ``topic``, lightly (not awaited).

        For high-rate data such as an LLM's tokens: the message is queued and sent in
        the background, in batches, in order; the call waits for the queue before it
        answers the engine, so a message published before a step ends is stored before
        that step's result. Not a step: nothing is recorded, and while the function
        re-runs code that already ran (replay) the call does nothing, so each message
        is delivered at most once. A message the engine does not take (unreachable, run
        ended) is dropped with one warning per call, never failing the function. Use
        ``step.publish`` for a message that must be stored exactly once.

        Plain (not ``async``) on both faces: it only queues, so it never waits on I/O.

        Args:
            topic: 1-128 characters of letters, digits and ``_ . : / -``.
            data: any value a step may return (pydantic models and dataclasses too).

        Raises:
            ConfigError: an invalid topic.
            StreamMessageTooLargeError: ``data``'s JSON is over ``max_stream_message_bytes``.
            OutputUnserializableError: ``data`` cannot be encoded as JSON.

        Example:
            >>> async for token in llm.stream(prompt):
            ...     ctx.publish("tokens", token)
        """
        publisher_of(self._state).publish(topic, data)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncContext:
    """Passed to plain ``def`` functions; like ``Context`` with a blocking ``step``."""

    event: Event
    events: list[Event]
    run_id: str
    attempt: int
    step: SyncStep
    logger: logging.LoggerAdapter[logging.Logger]
    #: the call's execution state (patches, replay, the call's publisher)
    _state: ExecutionState = dataclasses.field(repr=False, compare=False)

    @property
    def dry_run(self) -> bool:
        """True while the run is replayed from its record; see ``Context.dry_run``."""
        return self._state.dry_run

    def patched(self, change_id: str) -> bool:
        """Whether this run takes the new branch of a code change; see ``Context.patched``."""
        return self._state.patched(change_id)

    def deprecate_patch(self, change_id: str) -> None:
        """Retire ``patched(change_id)``; see ``Context.deprecate_patch``."""
        self._state.deprecate_patch(change_id)

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Set searchable attributes on this run; see ``Context.set_attributes``."""
        if not self._state.is_rerunning:
            connection = publisher_of(self._state).connection
            connection.run_sync(set_flow(connection.settings, self.run_id, attributes))

    def signal_token(self, name: str) -> str:
        """This run's token for the signal ``name``; see ``Context.signal_token``."""
        return signal_token(self._state, name)

    def publish(self, topic: str, data: object) -> None:
        """Publish ``data`` on the run's stream ``topic``, lightly; see ``Context.publish``."""
        publisher_of(self._state).publish(topic, data)


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # subscriptable at run time from Python 3.11 on
    _LoggerAdapter = logging.LoggerAdapter


class ReplayAwareLogger(_LoggerAdapter):
    """Drops log records while the function re-runs code that ran in an earlier request.

    Code before the first new step runs on every request; without this, its log
    lines would repeat once per step. Records carry ``run_id``, ``function_id``,
    ``step_id`` (the step whose code is running, else None) and ``attempt``.
    """

    def __init__(
        self, logger: logging.Logger, state: ExecutionState, function_id: str | None = None
    ) -> None:
        super().__init__(logger, {})
        self._state = state
        self._function_id = function_id

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log unless re-running (replaying, or not yet at a targeted step)."""
        if not self._state.is_rerunning:
            super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Add the run fields to every record's ``extra``."""
        extra = dict(kwargs.get("extra") or {})
        for key, value in log_fields(self._state, self._function_id).items():
            extra.setdefault(key, value)
        kwargs["extra"] = extra
        return msg, kwargs


def log_fields(state: ExecutionState, function_id: str | None = None) -> dict[str, Any]:
    """The run fields of log records made while ``state``'s function runs."""
    ctx = state.request.ctx
    return {
        "run_id": ctx.run_id,
        "function_id": function_id or ctx.fn_id,
        "step_id": state.current_step,
        "attempt": ctx.attempt,
    }


def call_state(ctx: Context | SyncContext) -> ExecutionState:
    """The execution state of ``ctx``'s call: for code of this SDK that reads what the
    engine sent with it (a durable endpoint's caller, ``CallContext.started_by``)."""
    return ctx._state
