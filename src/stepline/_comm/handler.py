"""``CommHandler``: GET inspects, PUT syncs, POST executes, for every framework.

The request logic is one generator (``_flow``) yielding effects; ``handle_sync`` and
``handle`` drive it with blocking or awaitable performers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as _dt
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from stepline import _errors, _identity, _logs
from stepline._api.run_info import FunctionNotFoundError
from stepline._comm import app_sync
from stepline._comm.checkpoints import RunCheckpoints
from stepline._comm.loop import LoopThread
from stepline._comm.messages import CommRequest, CommResponse, logger
from stepline._comm.pool import SdkPool
from stepline._comm.serve_endpoint import ServeEndpoint, Signer
from stepline._endpoints import registry as _endpoints
from stepline._event import Event
from stepline._execution import context as _context
from stepline._execution import invocation, tracing
from stepline._execution.call import ExecutionState, Outcome
from stepline._execution.checkpointing import Checkpointing, CheckpointPolicy, StepSink
from stepline._execution.divergence import Divergence
from stepline._protocol import headers
from stepline._protocol.execution import DISCOVERY_STEP_ID, ExecutionRequest
from stepline._replay import isolation
from stepline._transport.effects import Flow, drive_async, drive_sync

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_SERVE_PATH = "/api/inngest"
KEEPALIVE_SECONDS = 3.0
#: ``max_steps`` of a call whose steps are persisted as it goes: no cap but the runtime.
_UNCAPPED = 1 << 30


@dataclasses.dataclass(frozen=True, slots=True)
class RunFunction:
    """Effect: run the user's function for one request."""

    fn: Function
    state: ExecutionState
    events: list[Event]
    trace: tracing.ExecutionTrace | None = None


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
        serve_path = serve_path or settings.serve_path
        if serve_path is not None and not serve_path.startswith("/"):
            raise _errors.ConfigError(f"serve_path must start with '/', got {serve_path!r}")
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
        self.endpoint = ServeEndpoint(
            settings=settings,
            framework=framework,
            serve_origin=serve_origin or settings.serve_origin,
            serve_path=serve_path,
            base_headers=self._base_headers,
            functions=_endpoints.Served(_index(client, functions), client),
        )
        self.signer = Signer(settings, wall_clock)
        self._pool: SdkPool | None = None
        self._loop_thread = LoopThread()
        self._tracer = tracing.SdkTracer.create(client.tracer_provider)

    # -- drivers -------------------------------------------------------------------------

    def handle_sync(self, request: CommRequest) -> CommResponse:
        """Handle a request on a sync server (async functions run on a private loop)."""
        return drive_sync(self._flow(request), self._perform_sync)

    async def handle(self, request: CommRequest) -> CommResponse:
        """Handle a request on an async server (sync functions run on the thread pool)."""
        if self.streaming and request.method == "POST":
            return CommResponse(201, dict(self._base_headers), stream=self._stream(request))
        return await drive_async(self._flow(request), self._perform_async)

    async def handle_pooled(self, request: CommRequest) -> CommResponse:
        """``handle`` for a caller in this process on an event loop (the engine's embedded
        calls): a sync function's whole call, the SDK's work around it included, runs on
        the thread pool, one hop there and back; anything else as ``handle`` runs it."""
        pool = None
        if request.method == "POST":
            pool = self.pool_for(request.query.get("fnId") or "")
        if pool is None:
            return await self.handle(request)
        call = functools.partial(contextvars.copy_context().run, self.handle_sync, request)
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def pool_for(self, function_id: str) -> SdkPool | None:
        """The thread pool ``handle_pooled`` runs a call of ``function_id`` on (that
        thread then calls ``handle_sync``); None when the call runs on the caller's loop
        (an async or unknown function, no pool, a streamed answer)."""
        fn = self.functions.get(function_id)
        if fn is None or fn.is_async or self.thread_pool_max_workers == 0 or self.streaming:
            return None
        return self._executor()

    def _perform_sync(self, effect: object) -> Any:
        if isinstance(effect, RunFunction):
            if effect.fn.is_async:
                return self._loop_thread.run(_call_async(effect, self.client))
            return _call_sync(effect, self.client)
        return self.client.connection.perform_sync(effect)

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
        return await self.client.connection.perform_async(effect)

    def _executor(self) -> SdkPool:
        if self._pool is None:
            self._pool = SdkPool(self.thread_pool_max_workers, thread_name_prefix="stepline")
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
                return (yield from app_sync.sync(self.endpoint, self.signer, request))
            if request.method == "GET":
                return app_sync.inspect(self.endpoint, self.signer, request)
            raise _errors.MethodNotAllowedError(f"method {request.method} is not served")
        except _errors.SteplineError as exc:
            return CommResponse.from_error(exc, self._base_headers)

    def _execute(self, request: CommRequest) -> Flow[CommResponse]:
        key = self.verify(request)
        if request.query.get("probe") == "trust":
            app_sync.trust_probe(self.endpoint, request)
            return self.signed(CommResponse.json(200, None, self._base_headers), key)
        fn_id = request.query.get("fnId")
        if not fn_id:
            raise _errors.QueryParamMissingError("query parameter fnId is required")
        fn = self.functions.get(fn_id)
        if fn is None:
            raise FunctionNotFoundError(f"function {fn_id} not found")
        call = ExecutionRequest.parse(request.body)
        step_id = request.query.get("stepId")
        if key is not None:  # the query is not signed: it must agree with the signed body
            _check_target(self.functions, fn_id, step_id, call.ctx.fn_id, call.ctx.step_id)
        call.ctx.step_id = step_id or call.ctx.step_id
        if call.use_api:
            yield from app_sync.load_large_payloads(self.endpoint, call)
        outcome = yield from self._run(fn, call, request.headers, request.local)
        return self.signed(self._answer(outcome), key)

    def call_in_process(
        self,
        fn_id: str,
        call: ExecutionRequest,
        headers: Mapping[str, str],
        local: StepSink | None = None,
        *,
        run_on: bool = False,
    ) -> CommResponse:
        """``handle_sync`` for an execution request the engine in this process hands over
        as an object (its calls on the pool's thread): no body to parse, no signature to
        check (nothing crossed a network), the same answer. ``call`` must be the caller's
        own copy of the run's state: the function's code gets its events and memos.
        ``headers`` are lower-cased (the caller's trace context). ``run_on``: a call with
        no checkpointing answers its step at the code's next step, or with the function's
        result if it returns first (``ExecutionState``); the engine here records both."""
        flow = self._in_process(fn_id, call, headers, local, run_on)
        return drive_sync(flow, self._perform_sync)

    def _in_process(
        self,
        fn_id: str,
        call: ExecutionRequest,
        headers: Mapping[str, str],
        local: StepSink | None,
        run_on: bool,
    ) -> Flow[CommResponse]:
        try:  # as ``_flow`` answers what fails before the function runs
            fn = self.functions.get(fn_id)
            if fn is None:
                raise FunctionNotFoundError(f"function {fn_id} not found")
            outcome = yield from self._run(fn, call, headers, local, run_on=run_on)
        except _errors.SteplineError as exc:
            return CommResponse.from_error(exc, self._base_headers)
        return self._answer(outcome)

    def _run(
        self,
        fn: Function,
        call: ExecutionRequest,
        headers: Mapping[str, str],
        local: StepSink | None,
        *,
        run_on: bool = False,
    ) -> Flow[Outcome]:
        """Run ``fn`` for one checked request; its outcome."""
        policy = self._checkpoint_policy(call)
        state = ExecutionState(
            call, checkpoint=policy, nondeterminism=fn.options.nondeterminism, run_on=run_on
        )
        state.dry_run = call.ctx.dry_run
        if policy is not None:
            checkpoints = RunCheckpoints(self.client, call.ctx, local)
            option = self.client.settings.checkpointing
            if isinstance(option, Checkpointing) and option.buffered_steps:
                state.checkpointer = checkpoints
            else:  # steps go with the answer, but for those that demand a commit
                state.committer = checkpoints
        events = invocation.parse_events(state)
        trace = None
        if self._tracer is not None:
            trace = state.observer = self._tracer.execution(headers, call.ctx, fn.composite_id)
        outcome: Outcome = yield RunFunction(fn, state, events, trace)
        if outcome.divergence is not None:
            _log_divergence(fn, call, outcome.divergence)
        return outcome

    def _answer(self, outcome: Outcome) -> CommResponse:
        now = _dt.datetime.fromtimestamp(self._wall_clock(), _dt.timezone.utc)
        return CommResponse.from_call_result(outcome, self._base_headers, now=now)

    def _checkpoint_policy(self, call: ExecutionRequest) -> CheckpointPolicy | None:
        ctx = call.ctx
        option = self.client.settings.checkpointing
        allowed = (
            option is not False
            and ctx.fn_id is not None
            and ctx.qi_id is not None
            and ctx.step_id == DISCOVERY_STEP_ID
            and not ctx.disable_immediate_execution
        )
        if not allowed:
            return None
        if not isinstance(option, Checkpointing):
            return CheckpointPolicy()
        if option.buffered_steps is None:  # reported with the answer, as True
            return CheckpointPolicy(max_seconds=option.max_runtime)
        return CheckpointPolicy(_UNCAPPED, option.max_runtime, option.buffered_steps)

    # -- what adapters and tests read ---------------------------------------------------

    @property
    def framework(self) -> str:
        """The framework name sent as ``X-Inngest-Framework``."""
        return self.endpoint.framework

    @property
    def functions(self) -> Mapping[str, Function]:
        """The served functions (failure handlers included) by composite id."""
        return self.endpoint.functions

    @property
    def serve_origin(self) -> str | None:
        """The configured public origin, if any."""
        return self.endpoint.serve_origin

    @property
    def serve_path(self) -> str | None:
        """The configured public path, if any."""
        return self.endpoint.serve_path

    @property
    def route_path(self) -> str:
        """The path adapters mount the endpoint at (``serve_path`` or ``/api/inngest``)."""
        return self.serve_path or DEFAULT_SERVE_PATH

    @property
    def base_headers(self) -> dict[str, str]:
        """The headers every response carries."""
        return self._base_headers

    def verify(self, request: CommRequest) -> str | None:
        """Check the request signature; returns the key that validated, if any."""
        return self.signer.verify(request)

    def signed(self, response: CommResponse, key: str | None) -> CommResponse:
        """Sign the response body with the key that validated the request."""
        return self.signer.signed(response, key)


def _check_target(
    functions: Mapping[str, Function],
    fn_id: str,
    step_id: str | None,
    body_fn_id: str | None,
    body_step_id: str,
) -> None:
    """Refuse a signed call whose query names another function or step than its body.

    Compared where the body's values mean the same thing: Stepline's engine sends the
    function's slug in ``ctx.fn_id`` and the called step in ``ctx.step_id``; Inngest's
    server sends a UUID in ``ctx.fn_id`` and ``"step"`` in ``ctx.step_id``, which only
    a slug-sending body binds.
    """
    named = body_fn_id is not None and (body_fn_id in functions or not _is_uuid(body_fn_id))
    if named and body_fn_id != fn_id:
        raise _errors.SignatureVerificationError(
            f"query parameter fnId={fn_id!r} does not match the signed body's function "
            f"{body_fn_id!r}: the request was altered after the engine signed it"
        )
    bound = named or body_step_id != DISCOVERY_STEP_ID
    if bound and step_id is not None and step_id != body_step_id:
        raise _errors.SignatureVerificationError(
            f"query parameter stepId={step_id!r} does not match the signed body's step "
            f"{body_step_id!r}: the request was altered after the engine signed it"
        )


def _log_divergence(fn: Function, call: ExecutionRequest, divergence: Divergence) -> None:
    outcome = "the run fails" if divergence.policy == "fail" else "the run goes on"
    logger.warning(
        'stepline: function "%s" run %s: the replay no longer matches its recorded steps '
        "(%s); %s (nondeterminism=%r): use ctx.patched(...) or pin versions",
        fn.composite_id,
        call.ctx.run_id,
        divergence.describe(),
        outcome,
        divergence.policy,
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _log_fields(effect: RunFunction) -> contextvars.Token[_logs.Source | None]:
    """Bind the call's log fields (run, function, step) for the user's code."""
    return _logs.bind(functools.partial(_context.log_fields, effect.state, effect.fn.composite_id))


@contextlib.contextmanager
def _watched(effect: RunFunction) -> Iterator[Callable[[Outcome], Outcome]]:
    """Around one call of a traced or dry-run function: its span, and its isolation.

    Gives what to do with the outcome (the trace records it). A call neither traced nor
    dry-run (the usual one) needs neither: ``_call_sync`` and ``_call_async`` then call
    the function without entering this (a dozen Python calls fewer a step).
    """
    with contextlib.ExitStack() as stack:
        finished = _untraced
        if effect.trace is not None:
            stack.enter_context(effect.trace.function_call())
            finished = effect.trace.finished
        stack.enter_context(_isolated(effect.state))
        yield finished


def _untraced(outcome: Outcome) -> Outcome:
    return outcome


def _call_sync(effect: RunFunction, client: Client) -> Outcome:
    token = _log_fields(effect)
    try:
        if effect.trace is None and not effect.state.dry_run:
            return invocation.call_sync(effect.fn, effect.state, client, effect.events)
        with _watched(effect) as finished:
            return finished(invocation.call_sync(effect.fn, effect.state, client, effect.events))
    finally:
        _logs.unbind(token)


async def _call_async(effect: RunFunction, client: Client) -> Outcome:
    token = _log_fields(effect)
    try:
        if effect.trace is None and not effect.state.dry_run:
            return await invocation.call_async(effect.fn, effect.state, client, effect.events)
        with _watched(effect) as finished:
            outcome = await invocation.call_async(effect.fn, effect.state, client, effect.events)
            return finished(outcome)
    finally:
        _logs.unbind(token)


def _isolated(state: ExecutionState) -> contextlib.AbstractContextManager[object]:
    """A deploy check's dry run has the network refused to its code (``_replay.isolation``)."""
    return isolation.offline() if state.dry_run else contextlib.nullcontext()


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
