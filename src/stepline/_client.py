"""The client: declares functions, sends events, starts, finds and lists runs.

It composes: its ``EngineConnection`` owns the settings and transports, and what acts on
one run or one function lives on that run's or function's handle
(``stepline._api.management``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from typing_extensions import Unpack

from stepline import _settings
from stepline._api import approvals as _approvals
from stepline._api import bulk, sender, signals
from stepline._api import runs as _runs
from stepline._api import tokens as _tokens
from stepline._api.approvals import Approval
from stepline._api.bulk import BulkFilterArgs, BulkHandle, BulkInfo, SyncBulkHandle
from stepline._api.connection import EngineConnection
from stepline._api.management import (
    FunctionHandle,
    RunHandle,
    SyncFunctionHandle,
    SyncRunHandle,
    function_id,
)
from stepline._api.runs import RunInfo, RunStatus
from stepline._definition import function as _function
from stepline._definition.function import Function, FunctionOptionArgs, Handler, Trigger
from stepline._event import Event
from stepline._execution import tracing
from stepline._transport import effects


class Client:
    """An app's handle on Stepline: declares functions, sends events, starts and finds runs.

    Share one client per process (it keeps connection pools; they are re-made after a
    fork). ``start``/``execute``/``get_run``/``list_runs``/``rerun``, the bulk actions and
    ``get_function`` talk to the engine's REST API; each has a blocking twin ending in
    ``_sync``. What acts on one run (``cancel``, ``signal``, ``set_attributes``,
    ``replay``, ``stream``, ``result``) is on its handle (``get_run``); what acts on one
    function (``pause``, ``resume``, ``metrics``) on ``get_function``'s.

    Every setting is resolved once, here: an argument wins, then ``STEPLINE_*``
    environment variables, then their ``INNGEST_*`` equivalents, then defaults.

    Args:
        app_id: the app's id; function ids are prefixed with it.
        is_production: ``False`` for dev mode (no signatures, local engine URLs),
            ``True`` for cloud mode; ``None`` reads ``STEPLINE_DEV``/``INNGEST_DEV``.
        signing_key: verifies requests from the engine and authenticates to its API.
        signing_key_fallback: accepted during key rotation.
        event_key: key used to send events.
        api_base_url: engine API origin (registration, large payloads).
        event_api_base_url: event API origin.
        env: environment/branch name sent as ``X-Inngest-Env``.
        serve_origin: public origin of the app, when behind a proxy.
        serve_path: public path of the serve endpoint.
        streaming: ``"force"`` to answer with keepalive streaming where supported.
        thread_pool_max_workers: threads for sync functions under async servers
            (0 runs them inline on the event loop).
        allow_in_band_sync: accept in-band sync requests.
        app_version: optional app version sent at registration.
        checkpointing: run several steps per call when the engine allows it (default
            True: they are committed with the call's answer);
            ``Checkpointing(buffered_steps=1)`` commits each step before the next step's
            code runs (no replay, a step never runs again once its successor started);
            False makes one call per step.
        max_stream_message_bytes: the largest value (as JSON) ``ctx.publish`` and
            ``step.publish`` send on a run's stream (default 1 MiB, the engine's default).
        logger: logger handed to functions (through ``ctx.logger``).
        tracer_provider: an OpenTelemetry ``TracerProvider`` (``stepline[otel]``): each
            function call and step gets a span continuing the engine's trace. None
            (the default) traces nothing; ``trace.get_tracer_provider()`` uses the global one.
        environ: the environment to read (defaults to ``os.environ``).

    Attributes:
        connection: the settings, the transports and the running of flows, shared with
            the handles this client makes.
        logger: the logger handed to functions.
        tracer_provider: the OpenTelemetry tracer provider, or None.
    """

    def __init__(
        self,
        app_id: str,
        *,
        logger: logging.Logger | None = None,
        tracer_provider: Any = None,
        environ: Mapping[str, str] | None = None,
        **settings: Unpack[_settings.ClientSettings],
    ) -> None:
        resolved = _settings.resolve(
            app_id=app_id, environ=os.environ if environ is None else environ, **settings
        )
        self.connection = EngineConnection(resolved)
        self.logger = logger or logging.getLogger("stepline")
        self.tracer_provider = tracer_provider

    @property
    def settings(self) -> _settings.Settings:
        """The resolved settings (the connection's)."""
        return self.connection.settings

    @property
    def app_id(self) -> str:
        """The app id."""
        return self.settings.app_id

    def __repr__(self) -> str:
        return f"<stepline.Client app_id={self.app_id!r} mode={self.settings.mode!r}>"

    def function(
        self,
        *,
        id: str,
        trigger: Trigger | None = None,
        triggers: Sequence[Trigger] | None = None,
        on_failure: Handler | None = None,
        **options: Unpack[FunctionOptionArgs],
    ) -> Callable[[Handler], Function]:
        """Declare a durable function; invalid options raise ``ConfigError`` right here.

        Args:
            id: the function's id within the app.
            trigger: the event or cron that starts it (or ``triggers=``, a list).
            triggers: several triggers.
            on_failure: a handler run once the function has failed for good.
            **options: ``name``, ``description``, ``retries``, ``concurrency``,
                ``throttle``, ``rate_limit``, ``debounce``, ``batch_events``,
                ``priority``, ``cancel``, ``idempotency``, ``singleton``, ``timeouts``,
                ``nondeterminism`` (``"warn"`` or ``"fail"``: what a replay that no
                longer matches the recorded steps does), ``versioning`` (``"pinned"`` or
                ``"latest"``: where runs go once their app version is gone) (see
                ``FunctionOptions``).

        Example:
            >>> @client.function(id="welcome", trigger=stepline.TriggerEvent(event="user/signup"))
            ... async def welcome(ctx: stepline.Context) -> str: ...
        """
        return _function.declare(
            self.app_id, id=id, trigger=trigger, triggers=triggers, on_failure=on_failure, **options
        )

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send one or more events; returns their ids. Retries network errors and 5xx."""
        conn = self.connection
        return await sender.send_async(
            conn.async_transport, conn.settings, sender.listed(events), tracing.outgoing_headers()
        )

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        """Blocking twin of ``send``."""
        conn = self.connection
        return sender.send_sync(
            conn.sync_transport, conn.settings, sender.listed(events), tracing.outgoing_headers()
        )

    # -- runs ---------------------------------------------------------------------------

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
            FunctionNotFoundError: the engine does not know the function: its message
                says how to sync the app (a ``RunNotFoundError``).
            RunNotStartedError: flow control turned the start away (rate limit, singleton).
            ManagementError: the engine is unreachable or refused the request.
        """
        flow = self._start_flow(function, data, idempotency_key, started_by, attributes)
        run_id, created = await self.connection.run_async(flow)
        return RunHandle(self.connection, run_id, created=created)

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
        flow = self._start_flow(function, data, idempotency_key, started_by, attributes)
        run_id, created = self.connection.run_sync(flow)
        return SyncRunHandle(self.connection, run_id, created=created)

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
            FunctionNotFoundError, RunNotStartedError, ManagementError: as ``start``.
        """
        flow = self._execute_flow(
            function,
            data,
            timeout=timeout,
            idempotency_key=idempotency_key,
            started_by=started_by,
            attributes=attributes,
        )
        return await self.connection.run_async(flow)

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
        flow = self._execute_flow(
            function,
            data,
            timeout=timeout,
            idempotency_key=idempotency_key,
            started_by=started_by,
            attributes=attributes,
        )
        return self.connection.run_sync(flow)

    def get_run(self, run_id: str) -> RunHandle:
        """A handle on an existing run (no request until you use it)."""
        return RunHandle(self.connection, run_id)

    def get_run_sync(self, run_id: str) -> SyncRunHandle:
        """A blocking handle on an existing run."""
        return SyncRunHandle(self.connection, run_id)

    async def list_runs(
        self,
        *,
        function: Function | str | None = None,
        status: Sequence[RunStatus | str] = (),
        limit: int = 50,
        cursor: str | None = None,
        attributes: Mapping[str, str] | None = None,
        query: str | None = None,
    ) -> tuple[list[RunInfo], str | None]:
        """One page of runs, newest first, and the cursor of the next page (None at the end).

        ``attributes``: only runs with every one of these (name -> value as a string).
        ``query``: only runs this run query matches, e.g. ``'status == "Failed" &&
        event.data.plan == "pro"'`` (the fields and operators: docs/dashboard.md).
        """
        flow = self._list_flow(function, status, limit, cursor, attributes, query=query)
        return await self.connection.run_async(flow)

    def list_runs_sync(
        self,
        *,
        function: Function | str | None = None,
        status: Sequence[RunStatus | str] = (),
        limit: int = 50,
        cursor: str | None = None,
        attributes: Mapping[str, str] | None = None,
        query: str | None = None,
    ) -> tuple[list[RunInfo], str | None]:
        """Blocking twin of ``list_runs``."""
        flow = self._list_flow(function, status, limit, cursor, attributes, query=query)
        return self.connection.run_sync(flow)

    async def rerun(self, run_id: str) -> RunHandle:
        """Start a new run of the same function with the same trigger events."""
        flow = _runs.rerun_flow(self.settings, run_id)
        return RunHandle(self.connection, await self.connection.run_async(flow))

    def rerun_sync(self, run_id: str) -> SyncRunHandle:
        """Blocking twin of ``rerun``."""
        flow = _runs.rerun_flow(self.settings, run_id)
        return SyncRunHandle(self.connection, self.connection.run_sync(flow))

    async def conversation_runs(self, conversation_id: str) -> list[RunInfo]:
        """The runs of a conversation (the run attribute ``conversation``, which
        ``stepline.ai.DurableAgent`` sets), oldest first.

        Example:
            >>> runs = await client.conversation_runs("chat-42")
        """
        return await self.connection.run_async(
            _tokens.conversation_flow(self.settings, conversation_id)
        )

    def conversation_runs_sync(self, conversation_id: str) -> list[RunInfo]:
        """Blocking twin of ``conversation_runs``."""
        return self.connection.run_sync(_tokens.conversation_flow(self.settings, conversation_id))

    # -- functions, signals by key ----------------------------------------------------------

    def get_function(self, function: Function | str) -> FunctionHandle:
        """A handle on a function on the engine (``pause``, ``resume``, ``metrics``).

        Args:
            function: the function, or its id (``"app-fn"``; a bare id gets this app's prefix).
        """
        return FunctionHandle(self.connection, function_id(self.app_id, function))

    def get_function_sync(self, function: Function | str) -> SyncFunctionHandle:
        """A blocking handle on a function on the engine."""
        return SyncFunctionHandle(self.connection, function_id(self.app_id, function))

    async def signal_key(self, key: str, data: Any = None) -> str:
        """Complete the wait under ``key`` (a run's ``ctx.signal_token(name)``, or an
        official SDK's ``waitForSignal`` key); returns the id of the run it resumed.

        A wait of a known run is completed by name with ``get_run(run_id).signal``.

        Raises:
            SignalNotWaitingError: nothing waits under ``key``.
            SignalAlreadyReceivedError: the wait under this token already ended.
            ManagementError: the engine is unreachable, or ``data`` is not JSON.
        """
        return await self.connection.run_async(signals.key_flow(self.settings, key, data))

    def signal_key_sync(self, key: str, data: Any = None) -> str:
        """Blocking twin of ``signal_key``."""
        return self.connection.run_sync(signals.key_flow(self.settings, key, data))

    # -- approvals (stepline.ai) ------------------------------------------------------------

    async def approvals(
        self,
        *,
        function: Function | str | None = None,
        app_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Approval], str | None]:
        """One page of pending approvals (durable agents' tool calls waiting for a
        person), oldest run first, and the next page's cursor (None at the end).

        Args:
            function: only this function's (a ``Function`` or its id).
            app_id: only this app's; None: every app's.
        """
        return await self.connection.run_async(
            self._approvals_flow(function, app_id, limit, cursor)
        )

    def approvals_sync(
        self,
        *,
        function: Function | str | None = None,
        app_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Approval], str | None]:
        """Blocking twin of ``approvals``."""
        return self.connection.run_sync(self._approvals_flow(function, app_id, limit, cursor))

    async def get_approval(self, approval_id: str) -> Approval:
        """An approval, pending or decided.

        Raises:
            ApprovalNotFoundError: no approval with that id.
        """
        return await self.connection.run_async(_approvals.get_flow(self.settings, approval_id))

    def get_approval_sync(self, approval_id: str) -> Approval:
        """Blocking twin of ``get_approval``."""
        return self.connection.run_sync(_approvals.get_flow(self.settings, approval_id))

    async def approve(
        self, approval_id: str, *, args: Mapping[str, Any] | None = None, by: str | None = None
    ) -> Approval:
        """Approve a tool call: the run resumes and the tool runs, with ``args`` instead
        of the model's if given (checked against the tool's JSON schema).

        Args:
            approval_id: the approval's id.
            args: the tool's arguments, edited; None runs the model's.
            by: who decides (your user's id), recorded with the decision and its time.

        Raises:
            ApprovalNotFoundError: no approval with that id.
            ApprovalDecidedError: it was decided already, or its wait ended.
            ApprovalInvalidError: ``args`` do not match the tool's schema (each problem named).
        """
        body = _approvals.approve_body(args, by)
        flow = _approvals.decide_flow(self.settings, approval_id, "approve", body)
        return await self.connection.run_async(flow)

    def approve_sync(
        self, approval_id: str, *, args: Mapping[str, Any] | None = None, by: str | None = None
    ) -> Approval:
        """Blocking twin of ``approve``."""
        body = _approvals.approve_body(args, by)
        return self.connection.run_sync(
            _approvals.decide_flow(self.settings, approval_id, "approve", body)
        )

    async def reject(
        self, approval_id: str, reason: str | None = None, *, by: str | None = None
    ) -> Approval:
        """Reject a tool call: the run resumes and the model is told the call was denied,
        with ``reason``. Raises as ``approve`` does."""
        body = _approvals.reject_body(reason, by)
        flow = _approvals.decide_flow(self.settings, approval_id, "reject", body)
        return await self.connection.run_async(flow)

    def reject_sync(
        self, approval_id: str, reason: str | None = None, *, by: str | None = None
    ) -> Approval:
        """Blocking twin of ``reject``."""
        body = _approvals.reject_body(reason, by)
        return self.connection.run_sync(
            _approvals.decide_flow(self.settings, approval_id, "reject", body)
        )

    # -- bulk actions ---------------------------------------------------------------------

    async def bulk_cancel(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> BulkHandle:
        """Cancel every run the filter matches, in the background; returns its handle.

        Every criterion given (``BulkFilterArgs``) must hold: the function, one of the
        statuses, created in ``[since, until]`` (datetimes or epoch seconds), the trigger
        event's name, the CEL expression ``if_exp`` over the trigger event
        (``event.data.plan == "free"``) and the run attributes. Only runs created before
        the action was asked are matched. Give at least one.

        Args:
            idempotency_key: a second call with the same key returns the first action
                (``handle.created`` False) instead of starting another.
            **where: the filter (``BulkFilterArgs``).

        Raises:
            ManagementError: an invalid filter (the message says why, e.g. where the
                expression failed to parse), or the engine is unreachable.
        """
        info, created = await self.connection.run_async(
            self._bulk_flow("cancel", idempotency_key, where)
        )
        return BulkHandle(self.connection, info.bulk_id, created=created)

    def bulk_cancel_sync(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> SyncBulkHandle:
        """Blocking twin of ``bulk_cancel``."""
        info, created = self.connection.run_sync(self._bulk_flow("cancel", idempotency_key, where))
        return SyncBulkHandle(self.connection, info.bulk_id, created=created)

    async def bulk_replay(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> BulkHandle:
        """Replay every ended run the filter matches (a new linked run each), in the
        background; the filter as for ``bulk_cancel``. Live runs matched are skipped."""
        info, created = await self.connection.run_async(
            self._bulk_flow("replay", idempotency_key, where)
        )
        return BulkHandle(self.connection, info.bulk_id, created=created)

    def bulk_replay_sync(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> SyncBulkHandle:
        """Blocking twin of ``bulk_replay``."""
        info, created = self.connection.run_sync(self._bulk_flow("replay", idempotency_key, where))
        return SyncBulkHandle(self.connection, info.bulk_id, created=created)

    def get_bulk(self, bulk_id: str) -> BulkHandle:
        """A handle on an existing bulk action (no request until you use it)."""
        return BulkHandle(self.connection, bulk_id)

    def get_bulk_sync(self, bulk_id: str) -> SyncBulkHandle:
        """A blocking handle on an existing bulk action."""
        return SyncBulkHandle(self.connection, bulk_id)

    # -- closing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connections this event loop and blocking calls opened."""
        await self.connection.aclose()

    def close(self) -> None:
        """Close the connections of blocking calls (``aclose`` also closes async ones)."""
        self.connection.close()

    # -- the flows the twins share ----------------------------------------------------------

    def _start_flow(
        self,
        function: Function | str,
        data: Mapping[str, Any] | None,
        idempotency_key: str | None,
        started_by: str | None,
        attributes: Mapping[str, str | int | float | bool] | None,
    ) -> effects.Flow[tuple[str, bool]]:
        return _runs.start_flow(
            self.settings,
            function_id(self.app_id, function),
            data or {},
            idempotency_key,
            started_by,
            attributes=attributes,
        )

    def _execute_flow(
        self,
        function: Function | str,
        data: Mapping[str, Any] | None,
        *,
        timeout: float | None,
        idempotency_key: str | None,
        started_by: str | None,
        attributes: Mapping[str, str | int | float | bool] | None,
    ) -> effects.Flow[Any]:
        return _runs.execute_flow(
            self.settings,
            function_id(self.app_id, function),
            data or {},
            idempotency_key=idempotency_key,
            started_by=started_by,
            attributes=attributes,
            timeout=timeout,
            clock=time.monotonic,
        )

    def _list_flow(
        self,
        function: Function | str | None,
        status: Sequence[RunStatus | str],
        limit: int,
        cursor: str | None,
        attributes: Mapping[str, str] | None,
        *,
        query: str | None = None,
    ) -> effects.Flow[tuple[list[RunInfo], str | None]]:
        return _runs.list_flow(
            self.settings,
            function_id=None if function is None else function_id(self.app_id, function),
            status=status,
            limit=limit,
            cursor=cursor,
            attributes=attributes,
            query=query,
        )

    def _approvals_flow(
        self, function: Function | str | None, app_id: str | None, limit: int, cursor: str | None
    ) -> effects.Flow[tuple[list[Approval], str | None]]:
        fn_id = None if function is None else function_id(self.app_id, function)
        return _approvals.list_flow(
            self.settings, function_id=fn_id, app_id=app_id, limit=limit, cursor=cursor
        )

    def _bulk_flow(
        self, action: str, key: str | None, where: BulkFilterArgs
    ) -> effects.Flow[tuple[BulkInfo, bool]]:
        return bulk.start_flow(self.settings, action, bulk.filter_body(self.app_id, **where), key)
