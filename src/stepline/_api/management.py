"""Run management on the client: start runs, look them up, wait for results, cancel them.

``RunsMixin`` gives ``Client`` its async methods (``start``, ``get_run``, ``list_runs``,
``rerun``) and their blocking twins (``*_sync``); ``RunHandle`` and ``SyncRunHandle`` act
on one run. All of them run the flows of ``_runs`` over the client's transports.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from stepline import _settings
from stepline._api import runs as _runs
from stepline._api import streams
from stepline._api.runs import RunInfo, RunStatus, StepInfo
from stepline._api.streams import StreamMessage
from stepline._transport import effects, performers

if TYPE_CHECKING:
    from stepline._definition.function import Function

T = TypeVar("T")

__all__ = ["RunHandle", "RunsMixin", "SyncRunHandle", "function_id"]


class RunHandle:
    """One run, seen from async code (``await handle.result()``).

    Attributes:
        run_id: the run's id.
        created: False when ``start`` matched an earlier run by idempotency key.
    """

    def __init__(self, client: RunsMixin, run_id: str, *, created: bool = True) -> None:
        self._client = client
        self.run_id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.RunHandle {self.run_id}>"

    async def _run(self, flow: effects.Flow[T]) -> T:
        return await effects.drive_async(flow, self._client._async_transport.perform)

    async def describe(self) -> RunInfo:
        """The run as it is now."""
        return await self._run(_runs.get_flow(self._client.settings, self.run_id))

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
        settings = self._client.settings
        return await self._run(_runs.result_flow(settings, self.run_id, timeout, time.monotonic))

    async def cancel(self) -> RunStatus:
        """Cancel the run; returns its status afterwards (an ended run keeps its own)."""
        return await self._run(_runs.cancel_flow(self._client.settings, self.run_id))

    async def steps(self) -> list[StepInfo]:
        """The run's steps so far, in order."""
        return await self._run(_runs.steps_flow(self._client.settings, self.run_id))

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
        reader = _reader(self._client, self.run_id, topic, after, reconnect_for)
        while not reader.done:
            for message in await self._run(reader.next_page()):
                yield message


class SyncRunHandle:
    """Blocking twin of ``RunHandle`` (for Flask, Django and scripts)."""

    def __init__(self, client: RunsMixin, run_id: str, *, created: bool = True) -> None:
        self._client = client
        self.run_id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.SyncRunHandle {self.run_id}>"

    def _run(self, flow: effects.Flow[T]) -> T:
        return effects.drive_sync(flow, self._client._sync_transport.perform)

    def describe(self) -> RunInfo:
        """The run as it is now."""
        return self._run(_runs.get_flow(self._client.settings, self.run_id))

    def status(self) -> RunStatus:
        """The run's status now."""
        return self.describe().status

    def result(self, timeout: float | None = None) -> Any:
        """Blocking twin of ``RunHandle.result``."""
        settings = self._client.settings
        return self._run(_runs.result_flow(settings, self.run_id, timeout, time.monotonic))

    def cancel(self) -> RunStatus:
        """Cancel the run; returns its status afterwards."""
        return self._run(_runs.cancel_flow(self._client.settings, self.run_id))

    def steps(self) -> list[StepInfo]:
        """The run's steps so far, in order."""
        return self._run(_runs.steps_flow(self._client.settings, self.run_id))

    def stream(
        self, topic: str | None = None, after: int | None = None, *, reconnect_for: float = 60.0
    ) -> Iterator[StreamMessage]:
        """Blocking twin of ``RunHandle.stream``: ``for message in handle.stream():``."""
        reader = _reader(self._client, self.run_id, topic, after, reconnect_for)
        while not reader.done:
            yield from self._run(reader.next_page())


class RunsMixin:
    """The client's run-management methods; see ``Client``.

    The class it is mixed into gives it resolved settings and the two transports.
    """

    settings: _settings.Settings
    _sync_transport: performers.SyncTransport
    _async_transport: performers.AsyncTransport

    def _function_id(self, function: Function | str) -> str:
        return function_id(self.settings.app_id, function)

    async def start(
        self,
        function: Function | str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> RunHandle:
        """Start a run of ``function`` now, whatever its triggers; returns its handle.

        Args:
            function: the function, or its id (``"app-fn"``; a bare id gets this app's prefix).
            data: the run's ``event.data``.
            idempotency_key: a second start with the same key (within 24 hours) returns
                the first run's handle (``handle.created`` is False) instead of a new run.
            started_by: the principal starting it (your user's id, 1-256 characters):
                recorded as ``RunInfo.started_by``, and the key is scoped to it (the
                same key from another principal starts another run).
            attributes: searchable metadata for the run (name -> string, number or
                boolean; at most 32): ``list_runs(attributes=...)`` finds it by them.

        Raises:
            FunctionNotRegisteredError: the engine does not know the function: its message
                says how to sync the app (a ``RunNotFoundError``).
            RunNotStartedError: flow control turned the start away (rate limit, singleton).
            ManagementError: the engine is unreachable or refused the request.
        """
        flow = _runs.start_flow(
            self.settings,
            self._function_id(function),
            data or {},
            idempotency_key,
            started_by,
            attributes=attributes,
        )
        run_id, created = await effects.drive_async(flow, self._async_transport.perform)
        return RunHandle(self, run_id, created=created)

    def start_sync(
        self,
        function: Function | str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> SyncRunHandle:
        """Blocking twin of ``start``."""
        flow = _runs.start_flow(
            self.settings,
            self._function_id(function),
            data or {},
            idempotency_key,
            started_by,
            attributes=attributes,
        )
        run_id, created = effects.drive_sync(flow, self._sync_transport.perform)
        return SyncRunHandle(self, run_id, created=created)

    async def execute(
        self,
        function: Function | str,
        data: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Any:
        """Start a run of ``function`` and return its output once it ends: ``start``
        then ``result``, in one request to the engine when the run ends within 25 s.

        For a web request that waits for a durable function's answer. The arguments
        are ``start``'s, and ``timeout`` ``result``'s (the run goes on after it).

        Raises:
            RunFailedError: the run failed (``.error`` has its final error).
            RunCancelledError: the run was cancelled.
            RunTimeoutError: it had not ended after ``timeout`` seconds.
            FunctionNotRegisteredError, RunNotStartedError, ManagementError: as ``start``.
        """
        flow = _runs.execute_flow(
            self.settings,
            self._function_id(function),
            data or {},
            idempotency_key=idempotency_key,
            started_by=started_by,
            attributes=attributes,
            timeout=timeout,
            clock=time.monotonic,
        )
        return await effects.drive_async(flow, self._async_transport.perform)

    def execute_sync(
        self,
        function: Function | str,
        data: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Any:
        """Blocking twin of ``execute``."""
        flow = _runs.execute_flow(
            self.settings,
            self._function_id(function),
            data or {},
            idempotency_key=idempotency_key,
            started_by=started_by,
            attributes=attributes,
            timeout=timeout,
            clock=time.monotonic,
        )
        return effects.drive_sync(flow, self._sync_transport.perform)

    def get_run(self, run_id: str) -> RunHandle:
        """A handle on an existing run (no request until you use it)."""
        return RunHandle(self, run_id)

    def get_run_sync(self, run_id: str) -> SyncRunHandle:
        """A blocking handle on an existing run."""
        return SyncRunHandle(self, run_id)

    async def list_runs(
        self,
        *,
        function: Function | str | None = None,
        status: Sequence[RunStatus | str] = (),
        limit: int = 50,
        cursor: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> tuple[list[RunInfo], str | None]:
        """One page of runs, newest first, and the cursor of the next page (None at the end).

        ``attributes``: only runs with every one of these (name -> value as a string).
        """
        flow = self._list_flow(function, status, limit, cursor, attributes)
        return await effects.drive_async(flow, self._async_transport.perform)

    def list_runs_sync(
        self,
        *,
        function: Function | str | None = None,
        status: Sequence[RunStatus | str] = (),
        limit: int = 50,
        cursor: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> tuple[list[RunInfo], str | None]:
        """Blocking twin of ``list_runs``."""
        flow = self._list_flow(function, status, limit, cursor, attributes)
        return effects.drive_sync(flow, self._sync_transport.perform)

    def _list_flow(
        self,
        function: Function | str | None,
        status: Sequence[RunStatus | str],
        limit: int,
        cursor: str | None,
        attributes: Mapping[str, str] | None,
    ) -> effects.Flow[tuple[list[RunInfo], str | None]]:
        function_id = self._function_id(function) if function is not None else None
        return _runs.list_flow(
            self.settings,
            function_id=function_id,
            status=status,
            limit=limit,
            cursor=cursor,
            attributes=attributes,
        )

    async def rerun(self, run_id: str) -> RunHandle:
        """Start a new run of the same function with the same trigger events."""
        flow = _runs.rerun_flow(self.settings, run_id)
        return RunHandle(self, await effects.drive_async(flow, self._async_transport.perform))

    def rerun_sync(self, run_id: str) -> SyncRunHandle:
        """Blocking twin of ``rerun``."""
        flow = _runs.rerun_flow(self.settings, run_id)
        return SyncRunHandle(self, effects.drive_sync(flow, self._sync_transport.perform))


def _reader(
    client: RunsMixin, run_id: str, topic: str | None, after: int | None, reconnect_for: float
) -> streams.StreamReader:
    return streams.StreamReader(
        client.settings,
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
