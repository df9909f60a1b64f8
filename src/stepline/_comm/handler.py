"""``CommHandler``: GET inspects, PUT syncs, POST executes, for every framework.

The request logic is one generator (``_flow``) yielding effects; ``handle_sync`` and
``handle`` drive it with blocking or awaitable performers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as _dt
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from stepline import _context, _errors, _identity, _invocation, _logs, _tracing
from stepline._comm import registration as sync_flow
from stepline._comm.loop import LoopThread
from stepline._comm.messages import CommRequest, CommResponse
from stepline._effects import Flow, drive_async, drive_sync
from stepline._event import Event
from stepline._execution import CheckpointPolicy, ExecutionState, Outcome
from stepline._protocol import headers, signing
from stepline._protocol.execution import DISCOVERY_STEP_ID, ExecutionRequest

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._function import Function

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_SERVE_PATH = "/api/inngest"
KEEPALIVE_SECONDS = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class RunFunction:
    """Effect: run the user's function for one request."""

    fn: Function
    state: ExecutionState
    events: list[Event]
    trace: _tracing.ExecutionTrace | None = None


class CommHandler:
    """Serves one app's functions through any framework.

    Args:
        client: the app's client (its settings are read once, here).
        functions: the functions to serve.
        framework: the framework name sent as ``X-Inngest-Framework``.
        serve_origin: overrides the client's serve origin.
        serve_path: overrides the client's serve path.
        streaming: overrides the client's streaming setting (async servers only).
        thread_pool_max_workers: threads for sync functions under an async server;
            0 runs them inline.
        max_body_bytes: larger request bodies are refused with 413.
        can_stream: whether the adapter can send streamed responses; asking a sync
            adapter to stream is a ``ConfigError``.
    """

    def __init__(
        self,
        *,
        client: Client,
        functions: Sequence[Function],
        framework: str,
        serve_origin: str | None = None,
        serve_path: str | None = None,
        streaming: Literal["disable", "force"] | None = None,
        thread_pool_max_workers: int | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        can_stream: bool = True,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        settings = client.settings
        self.client = client
        self.framework = framework
        self.functions = _index(client, functions)
        self.serve_origin = serve_origin or settings.serve_origin
        self.serve_path = serve_path or settings.serve_path
        if self.serve_path is not None and not self.serve_path.startswith("/"):
            raise _errors.ConfigError(f"serve_path must start with '/', got {self.serve_path!r}")
        if streaming not in (None, "disable", "force"):
            raise _errors.ConfigError(f"streaming must be 'disable' or 'force', got {streaming!r}")
        if streaming == "force" and not can_stream:
            raise _errors.ConfigError(f"{framework} is a sync server and cannot stream responses")
        self.streaming = can_stream and (streaming or settings.streaming) == "force"
        workers = settings.thread_pool_max_workers
        if thread_pool_max_workers is not None:
            if isinstance(thread_pool_max_workers, bool) or thread_pool_max_workers < 0:
                raise _errors.ConfigError(
                    f"thread_pool_max_workers must be an int >= 0, got {thread_pool_max_workers!r}"
                )
            workers = thread_pool_max_workers
        self.thread_pool_max_workers = workers
        self.max_body_bytes = max_body_bytes
        self._wall_clock = wall_clock
        self._base_headers = _base_headers(client, framework)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop_thread = LoopThread()
        self._tracer = _tracing.SdkTracer.create(client.tracer_provider)

    # -- drivers -------------------------------------------------------------------------

    def handle_sync(self, request: CommRequest) -> CommResponse:
        """Handle a request on a sync server (async functions run on a private loop)."""
        return drive_sync(self._flow(request), self._perform_sync)

    async def handle(self, request: CommRequest) -> CommResponse:
        """Handle a request on an async server (sync functions run on the thread pool)."""
        if self.streaming and request.method == "POST":
            return CommResponse(201, dict(self._base_headers), stream=self._stream(request))
        return await drive_async(self._flow(request), self._perform_async)

    def _perform_sync(self, effect: object) -> Any:
        if isinstance(effect, RunFunction):
            if effect.fn.is_async:
                return self._loop_thread.run(_call_async(effect, self.client))
            return _call_sync(effect, self.client)
        return self.client._sync_transport.perform(effect)

    async def _perform_async(self, effect: object) -> Any:
        if isinstance(effect, RunFunction):
            if effect.fn.is_async:
                return await _call_async(effect, self.client)
            if self.thread_pool_max_workers == 0:
                return _call_sync(effect, self.client)
            call = functools.partial(
                contextvars.copy_context().run, _call_sync, effect, self.client
            )
            return await asyncio.get_running_loop().run_in_executor(self._executor(), call)
        return await self.client._async_transport.perform(effect)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.thread_pool_max_workers, thread_name_prefix="stepline"
            )
        return self._pool

    async def _stream(self, request: CommRequest) -> AsyncIterator[bytes]:
        task = asyncio.ensure_future(drive_async(self._flow(request), self._perform_async))
        try:
            while not (await asyncio.wait({task}, timeout=KEEPALIVE_SECONDS))[0]:
                yield b" "
        finally:
            task.cancel()  # a no-op once done; stops the work if the client went away
        try:
            inner = task.result()
        except Exception as exc:  # a fault of ours: still answer inside the envelope
            inner = CommResponse.from_error(exc, self._base_headers)
        envelope = {"status": inner.status, "headers": inner.headers, "body": inner.body.decode()}
        yield json.dumps(envelope).encode()

    def close(self) -> None:
        """Release the thread pool and the private loop."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        self._loop_thread.close()

    # -- the logic, once -----------------------------------------------------------------

    def _flow(self, request: CommRequest) -> Flow[CommResponse]:
        try:
            if len(request.body) > self.max_body_bytes:
                raise _errors.BodyTooLargeError(
                    f"request body of {len(request.body)} bytes exceeds {self.max_body_bytes}"
                )
            if request.method == "POST":
                return (yield from self._execute(request))
            if request.method == "PUT":
                return (yield from sync_flow.sync(self, request))
            if request.method == "GET":
                return sync_flow.inspect(self, request)
            raise _errors.MethodNotAllowedError(f"method {request.method} is not served")
        except _errors.SteplineError as exc:
            return CommResponse.from_error(exc, self._base_headers)

    def _execute(self, request: CommRequest) -> Flow[CommResponse]:
        key = self.verify(request)
        if request.query.get("probe") == "trust":
            return self.signed(CommResponse.json(200, None, self._base_headers), key)
        fn_id = request.query.get("fnId")
        if not fn_id:
            raise _errors.QueryParamMissingError("query parameter fnId is required")
        fn = self.functions.get(fn_id)
        if fn is None:
            raise _errors.FunctionNotFoundError(f"function {fn_id} not found")
        call = ExecutionRequest.parse(request.body)
        call.ctx.step_id = request.query.get("stepId") or call.ctx.step_id
        if call.use_api:
            yield from sync_flow.load_large_payloads(self, call)
        state = ExecutionState(call, checkpoint=self._checkpoint_policy(call))
        events = _invocation.parse_events(state)
        trace = None
        if self._tracer is not None:
            trace = state.observer = self._tracer.execution(request.headers, call.ctx, fn_id)
        outcome: Outcome = yield RunFunction(fn, state, events, trace)
        now = _dt.datetime.fromtimestamp(self._wall_clock(), _dt.timezone.utc)
        return self.signed(CommResponse.from_call_result(outcome, self._base_headers, now=now), key)

    def _checkpoint_policy(self, call: ExecutionRequest) -> CheckpointPolicy | None:
        ctx = call.ctx
        allowed = (
            self.client.settings.checkpointing
            and ctx.fn_id is not None
            and ctx.qi_id is not None
            and ctx.step_id == DISCOVERY_STEP_ID
            and not ctx.disable_immediate_execution
        )
        return CheckpointPolicy() if allowed else None

    # -- shared helpers (used by the registration module too) ----------------------------

    @property
    def route_path(self) -> str:
        """The path adapters mount the endpoint at (``serve_path`` or ``/api/inngest``)."""
        return self.serve_path or DEFAULT_SERVE_PATH

    @property
    def base_headers(self) -> dict[str, str]:
        """The headers every response carries."""
        return self._base_headers

    def verify(self, request: CommRequest) -> str | None:
        """Check the request signature; returns the key that validated, if any.

        Cloud mode requires a valid signature; dev mode checks one only when it is
        present and a key is configured.
        """
        settings = self.client.settings
        header = request.headers.get(headers.SIGNATURE)
        if settings.is_dev and (header is None or not settings.signing_keys):
            return None
        if not settings.signing_keys:
            raise _errors.SigningKeyMissingError(
                "cloud mode needs a signing key: set STEPLINE_SIGNING_KEY or pass "
                "signing_key=, or use dev mode (STEPLINE_DEV=1)"
            )
        return signing.verify(request.body, header, settings.signing_keys, now=self._wall_clock())

    def signed(self, response: CommResponse, key: str | None) -> CommResponse:
        """Sign the response body with the key that validated the request."""
        if key is not None:
            response.headers[headers.SIGNATURE] = signing.sign(
                response.body, key, now=self._wall_clock()
            )
        return response


def _call_sync(effect: RunFunction, client: Client) -> Outcome:
    token = _logs.bind(functools.partial(_context.log_fields, effect.state, effect.fn.composite_id))
    try:
        if effect.trace is None:
            return _invocation.call_sync(effect.fn, effect.state, client, effect.events)
        with effect.trace.function_call():
            outcome = _invocation.call_sync(effect.fn, effect.state, client, effect.events)
            return effect.trace.finished(outcome)
    finally:
        _logs.unbind(token)


async def _call_async(effect: RunFunction, client: Client) -> Outcome:
    token = _logs.bind(functools.partial(_context.log_fields, effect.state, effect.fn.composite_id))
    try:
        if effect.trace is None:
            return await _invocation.call_async(effect.fn, effect.state, client, effect.events)
        with effect.trace.function_call():
            outcome = await _invocation.call_async(effect.fn, effect.state, client, effect.events)
            return effect.trace.finished(outcome)
    finally:
        _logs.unbind(token)


def _index(client: Client, functions: Sequence[Function]) -> dict[str, Function]:
    index: dict[str, Function] = {}
    for fn in functions:
        if fn.app_id != client.app_id:
            raise _errors.ConfigError(
                f"function {fn.composite_id!r} belongs to app {fn.app_id!r}, "
                f"not to the served app {client.app_id!r}"
            )
        for each in fn.all():
            if each.composite_id in index:
                raise _errors.ConfigError(f"duplicate function id {each.composite_id!r}")
            index[each.composite_id] = each
    return index


def _base_headers(client: Client, framework: str) -> dict[str, str]:
    settings = client.settings
    base = {
        headers.CONTENT_TYPE: headers.JSON,
        headers.SDK: _identity.SDK_HEADER,
        headers.REQ_VERSION: headers.REQUEST_VERSION,
        headers.USER_AGENT: _identity.SDK_HEADER,
        headers.FRAMEWORK: framework,
        headers.EXPECTED_SERVER_KIND: settings.mode,
        headers.SDK_HANDLED: "true",
    }
    if settings.env:
        base[headers.ENV] = settings.env
    return base
