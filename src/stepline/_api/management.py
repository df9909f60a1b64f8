"""Handles on what the engine holds: one run (``RunHandle``) and one function
(``FunctionHandle``), each with its blocking twin (``SyncRunHandle``, ``SyncFunctionHandle``).

A handle is a name plus the client's ``EngineConnection``: making one sends nothing, and
each method runs one flow (``runs``, ``signals``, ``attributes``, ``pause``, ``metrics``,
``tokens``, ``streams``) on the async or the blocking transport. Both faces have the same methods.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from stepline._api import runs as _runs
from stepline._api import streams
from stepline._api.attributes import AttributeValue, set_flow
from stepline._api.connection import EngineConnection
from stepline._api.metrics import Window, metrics_flow
from stepline._api.pause import PausedFunction, pause_flow, resume_flow
from stepline._api.runs import RunInfo, RunStatus, StepInfo
from stepline._api.signals import signal_flow
from stepline._api.streams import StreamMessage
from stepline._api.tokens import function_tokens_flow, run_tokens_flow

if TYPE_CHECKING:
    from stepline._definition.function import Function

__all__ = [
    "FunctionHandle",
    "RunHandle",
    "SyncFunctionHandle",
    "SyncRunHandle",
    "function_id",
]


class RunHandle:
    """One run, seen from async code (``await handle.result()``).

    Attributes:
        run_id: the run's id.
        created: False when ``start`` matched an earlier run by idempotency key.
    """

    def __init__(self, connection: EngineConnection, run_id: str, *, created: bool = True) -> None:
        self.connection = connection
        self.run_id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.RunHandle {self.run_id}>"

    async def describe(self) -> RunInfo:
        """The run as it is now."""
        conn = self.connection
        return await conn.run_async(_runs.get_flow(conn.settings, self.run_id))

    async def status(self) -> RunStatus:
        """The run's status now."""
        return (await self.describe()).status

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to end (long-polling the engine) and return its output.

        Raises:
            RunFailedError: the run failed (``.error`` has its final error).
            RunCancelledError: the run was cancelled.
            RunTimeoutError: it had not ended after ``timeout`` seconds.
        """
        conn = self.connection
        flow = _runs.result_flow(conn.settings, self.run_id, timeout, time.monotonic)
        return await conn.run_async(flow)

    async def cancel(self) -> RunStatus:
        """Cancel the run; returns its status afterwards (an ended run keeps its own)."""
        conn = self.connection
        return await conn.run_async(_runs.cancel_flow(conn.settings, self.run_id))

    async def steps(self) -> list[StepInfo]:
        """The run's steps so far, in order."""
        conn = self.connection
        return await conn.run_async(_runs.steps_flow(conn.settings, self.run_id))

    async def tokens(self) -> dict[str, Any]:
        """What the run's AI model requests used (``stepline.ai``), as the engine counts it.

        Returns:
            ``{"input_tokens", "output_tokens", "total_tokens", "requests", "models":
            {model: {...the same}}, "steps": [{"step_id", "at", "input_tokens",
            "output_tokens", "model"}]}``.

        Raises:
            RunNotFoundError: no such run.
        """
        conn = self.connection
        return await conn.run_async(run_tokens_flow(conn.settings, self.run_id))

    async def signal(self, name: str, data: Any = None) -> None:
        """Complete the run's ``step.wait_for_signal(..., signal=name)`` with ``data``.

        Args:
            name: the signal's name, as the step waits for it.
            data: any JSON value; the step returns it.

        Raises:
            SignalNotWaitingError: no such run, or it waits for no signal ``name`` now.
            SignalAlreadyReceivedError: its wait for ``name`` already ended (a signal
                completes a wait once).
            ManagementError: the engine is unreachable, or ``data`` is not JSON.

        Example:
            >>> await client.get_run(run_id).signal("approved", {"by": "ana"})
        """
        conn = self.connection
        await conn.run_async(signal_flow(conn.settings, self.run_id, name, data))

    async def set_attributes(self, values: Mapping[str, AttributeValue]) -> dict[str, str]:
        """Set (or replace) searchable attributes on the run, live or ended; returns all
        it has now (name -> value as a string).

        Raises:
            RunNotFoundError: no such run.
            ManagementError: a bad name or value (the message names it), more than 32
                attributes, or the engine is unreachable.
        """
        conn = self.connection
        return await conn.run_async(set_flow(conn.settings, self.run_id, values))

    async def replay(self, *, from_step: str | None = None) -> RunHandle:
        """Start a new run of this ended run's function with its trigger events.

        With ``from_step`` (a step's id as you wrote it, ``"charge"``, or its hashed id),
        the new run reuses this run's results of the steps that completed before that
        one and runs from it on. This run is left as it was; the new run's REST view
        names it (``replay_of``).

        Raises:
            RunNotFoundError: no such run, or no such step in it.
            RunNotStartedError: the run has not ended yet (409).
        """
        conn = self.connection
        new = await conn.run_async(_runs.replay_flow(conn.settings, self.run_id, from_step))
        return RunHandle(conn, new)

    async def stream(
        self, topic: str | None = None, after: int | None = None, *, reconnect_for: float = 60.0
    ) -> AsyncIterator[StreamMessage]:
        """The messages the run publishes, as they come; ends when the run has ended.

        ``async for message in handle.stream(topic="progress"):`` long-polls the engine.
        A message is handed out once: an engine restart (connection refused) is retried
        from the last message seen, with backoff.

        Args:
            topic: only messages on this topic (default: every topic).
            after: start after this sequence number (a ``StreamMessage.seq`` seen
                before); default: from the first message.
            reconnect_for: how long (seconds) to keep retrying an unreachable engine
                before giving up.

        Raises:
            RunNotFoundError: no run with that id.
            ManagementError: the engine failed for ``reconnect_for`` seconds in a row
                (the message says which ``after`` to read on from).
        """
        reader = _reader(self.connection, self.run_id, topic, after, reconnect_for)
        while not reader.done:
            for message in await self.connection.run_async(reader.next_page()):
                yield message


class SyncRunHandle:
    """Blocking twin of ``RunHandle`` (for Flask, Django and scripts)."""

    def __init__(self, connection: EngineConnection, run_id: str, *, created: bool = True) -> None:
        self.connection = connection
        self.run_id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.SyncRunHandle {self.run_id}>"

    def describe(self) -> RunInfo:
        """The run as it is now."""
        conn = self.connection
        return conn.run_sync(_runs.get_flow(conn.settings, self.run_id))

    def status(self) -> RunStatus:
        """The run's status now."""
        return self.describe().status

    def result(self, timeout: float | None = None) -> Any:
        """Blocking twin of ``RunHandle.result``."""
        conn = self.connection
        return conn.run_sync(_runs.result_flow(conn.settings, self.run_id, timeout, time.monotonic))

    def cancel(self) -> RunStatus:
        """Cancel the run; returns its status afterwards."""
        conn = self.connection
        return conn.run_sync(_runs.cancel_flow(conn.settings, self.run_id))

    def steps(self) -> list[StepInfo]:
        """The run's steps so far, in order."""
        conn = self.connection
        return conn.run_sync(_runs.steps_flow(conn.settings, self.run_id))

    def tokens(self) -> dict[str, Any]:
        """Blocking twin of ``RunHandle.tokens``."""
        conn = self.connection
        return conn.run_sync(run_tokens_flow(conn.settings, self.run_id))

    def signal(self, name: str, data: Any = None) -> None:
        """Blocking twin of ``RunHandle.signal``."""
        conn = self.connection
        conn.run_sync(signal_flow(conn.settings, self.run_id, name, data))

    def set_attributes(self, values: Mapping[str, AttributeValue]) -> dict[str, str]:
        """Blocking twin of ``RunHandle.set_attributes``."""
        conn = self.connection
        return conn.run_sync(set_flow(conn.settings, self.run_id, values))

    def replay(self, *, from_step: str | None = None) -> SyncRunHandle:
        """Blocking twin of ``RunHandle.replay``."""
        conn = self.connection
        return SyncRunHandle(
            conn, conn.run_sync(_runs.replay_flow(conn.settings, self.run_id, from_step))
        )

    def stream(
        self, topic: str | None = None, after: int | None = None, *, reconnect_for: float = 60.0
    ) -> Iterator[StreamMessage]:
        """Blocking twin of ``RunHandle.stream``: ``for message in handle.stream():``."""
        reader = _reader(self.connection, self.run_id, topic, after, reconnect_for)
        while not reader.done:
            yield from self.connection.run_sync(reader.next_page())


class FunctionHandle:
    """One function on the engine, seen from async code (``await fn.pause()``).

    Attributes:
        function_id: the function's id on the engine (``"app-fn"``).
    """

    def __init__(self, connection: EngineConnection, function_id: str) -> None:
        self.connection = connection
        self.function_id = function_id

    def __repr__(self) -> str:
        return f"<stepline.FunctionHandle {self.function_id!r}>"

    async def pause(
        self, *, crons: Literal["queue", "skip"] = "queue", reason: str | None = None
    ) -> PausedFunction:
        """Pause the function: its runs are created but none of its calls runs until resumed.

        A call already running finishes (with checkpointing, the steps the SDK runs in
        that call); the run stops before its next call. Sleeps and waits keep their
        timers. Pausing a paused function changes its ``crons`` and ``reason``.

        Args:
            crons: what its cron ticks do meanwhile: ``"queue"`` starts runs that wait,
                ``"skip"`` starts none.
            reason: why (shown in the dashboard and ``stepline functions list``).

        Raises:
            FunctionNotFoundError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the request.
        """
        conn = self.connection
        return await conn.run_async(pause_flow(conn.settings, self.function_id, crons, reason))

    async def resume(self) -> bool:
        """Resume the paused function: what waited runs, oldest first.

        Returns:
            Whether the function was paused.

        Raises:
            FunctionNotFoundError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the request.
        """
        conn = self.connection
        return await conn.run_async(resume_flow(conn.settings, self.function_id))

    async def metrics(
        self,
        window: Window | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        bucket: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """The function's metrics over a window, as the dashboard's function page charts them.

        Args:
            window: ``"1h"``, ``"6h"``, ``"24h"`` (the default) or ``"7d"``, in whole
                buckets of 1 minute, 10 minutes, 30 minutes and 4 hours.
            since: the start of another window (instead of ``window``).
            until: its end (default: now).
            bucket: the bucket size (default: one giving at most 60 buckets).

        Returns:
            ``{"since", "until", "bucket_seconds", "buckets": [...], "totals", "queue"}``:
            per bucket ``started``, ``completed``, ``failed``, ``cancelled``,
            ``failure_rate``, ``duration_p50_ms``/``_p95_ms``, ``queued`` and
            ``delay_p50_ms``/``_p95_ms`` (see docs/dashboard.md, "Function metrics").

        Raises:
            FunctionNotFoundError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the window (400).
        """
        conn = self.connection
        flow = metrics_flow(
            conn.settings, self.function_id, window, since=since, until=until, bucket=bucket
        )
        return await conn.run_async(flow)

    async def tokens(
        self,
        window: Window | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        bucket: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """The tokens the function's AI model requests used (``stepline.ai``), over time.

        Args: as ``metrics``'s (``window`` ``"1h"``, ``"6h"``, ``"24h"`` by default, ``"7d"``, or
            ``since``/``until``/``bucket``).

        Returns:
            ``{"since", "until", "bucket_seconds", "buckets": [...], "totals", "models"}``:
            per bucket ``input_tokens``, ``output_tokens``, ``total_tokens``,
            ``requests`` and ``runs``; per model the totals.

        Raises:
            FunctionNotFoundError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the window (400).
        """
        conn = self.connection
        flow = function_tokens_flow(
            conn.settings, self.function_id, window, since=since, until=until, bucket=bucket
        )
        return await conn.run_async(flow)


class SyncFunctionHandle:
    """Blocking twin of ``FunctionHandle``."""

    def __init__(self, connection: EngineConnection, function_id: str) -> None:
        self.connection = connection
        self.function_id = function_id

    def __repr__(self) -> str:
        return f"<stepline.SyncFunctionHandle {self.function_id!r}>"

    def pause(
        self, *, crons: Literal["queue", "skip"] = "queue", reason: str | None = None
    ) -> PausedFunction:
        """Blocking twin of ``FunctionHandle.pause``."""
        conn = self.connection
        return conn.run_sync(pause_flow(conn.settings, self.function_id, crons, reason))

    def resume(self) -> bool:
        """Blocking twin of ``FunctionHandle.resume``."""
        conn = self.connection
        return conn.run_sync(resume_flow(conn.settings, self.function_id))

    def metrics(
        self,
        window: Window | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        bucket: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """Blocking twin of ``FunctionHandle.metrics``."""
        conn = self.connection
        flow = metrics_flow(
            conn.settings, self.function_id, window, since=since, until=until, bucket=bucket
        )
        return conn.run_sync(flow)

    def tokens(
        self,
        window: Window | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        bucket: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """Blocking twin of ``FunctionHandle.tokens``."""
        conn = self.connection
        flow = function_tokens_flow(
            conn.settings, self.function_id, window, since=since, until=until, bucket=bucket
        )
        return conn.run_sync(flow)


def _reader(
    connection: EngineConnection,
    run_id: str,
    topic: str | None,
    after: int | None,
    reconnect_for: float,
) -> streams.StreamReader:
    return streams.StreamReader(
        connection.settings,
        run_id,
        topic=topic,
        after=after,
        clock=time.monotonic,
        reconnect_for=reconnect_for,
    )


def function_id(app_id: str, function: Function | str) -> str:
    """The engine's id of ``function``: its composite id, or a bare id with the app's prefix."""
    if isinstance(function, str):
        prefix = f"{app_id}-"
        return function if function.startswith(prefix) else prefix + function
    return function.composite_id
