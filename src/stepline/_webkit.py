"""The web-app kit's routes, framework-neutral: start, status, cancel, result, live events.

``RunRoutes`` answers five routes under wherever an adapter mounts it::

    POST {mount}/runs                 {"function": "<id>", "data": {...}, "idempotency_key"?}
    GET  {mount}/runs/{run_id}        the run (status, output or error, timestamps)
    POST {mount}/runs/{run_id}/cancel
    GET  {mount}/runs/{run_id}/result ?wait=<s>: 200 once ended, 202 while it runs
    GET  {mount}/runs/{run_id}/events Server-Sent Events: status, step, then result

The logic is written once as generators yielding effects (HTTP calls to the engine,
sleeps, the app's authorization hook, SSE chunks); ``handle_sync`` and ``handle_async``
drive them for WSGI and asynchronous frameworks. Only the functions given are exposed:
other functions cannot be started and their runs answer 404. Every request goes through
``authorize`` first, which is required: pass ``allow_all`` to make the routes public on
purpose.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from stepline import _effects, _errors, _runs
from stepline._client import Client
from stepline._function import Function
from stepline._runs import RunInfo

__all__ = [
    "AccessDenied",
    "AccessRequest",
    "RunRoutes",
    "WebRequest",
    "WebResponse",
    "allow_all",
]

logger = logging.getLogger("stepline.web")

#: The actions ``authorize`` is asked about.
ACTIONS = ("start", "status", "cancel", "result", "events")
MAX_BODY = 1024 * 1024
_RUN_PATH = re.compile(r"^/runs/(?P<run>[A-Za-z0-9_-]{1,64})(?P<rest>/cancel|/result|/events)?$")


@dataclasses.dataclass(frozen=True, slots=True)
class AccessRequest:
    """What ``authorize`` decides on.

    Attributes:
        request: the framework's own request object (headers, session, user...).
        action: ``start``, ``status``, ``cancel``, ``result`` or ``events``.
        function_id: the function started, or the run's function.
        run_id: the run acted on (None for ``start``).
        data: the start's data as sent (checked before the function's input model), else None.
    """

    request: Any
    action: str
    function_id: str | None
    run_id: str | None = None
    data: Mapping[str, Any] | None = None


class AccessDenied(_errors.SteplineError):
    """Raise from ``authorize`` to answer with your own status (401, 403) and message."""

    code = "access_denied"

    def __init__(self, message: str = "forbidden", *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


Authorize = Callable[[AccessRequest], "bool | Awaitable[bool]"]


def allow_all(access: AccessRequest) -> bool:
    """An ``authorize`` hook that lets every request through (public routes, on purpose)."""
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class WebRequest:
    """A request as adapters hand it to ``RunRoutes``.

    Attributes:
        path: the part under the kit's mount, starting ``/runs``.
        mount: the URL prefix the kit is mounted at (used to build links).
        native: the framework's request object, passed to ``authorize``.
    """

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes
    native: Any
    mount: str = ""


@dataclasses.dataclass(slots=True)
class WebResponse:
    """An answer; ``stream`` is set for Server-Sent Events (iterate ``chunks_*``)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"content-type": "application/json"}
    )
    stream: _effects.Flow[None] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Authorize:
    access: AccessRequest


@dataclasses.dataclass(frozen=True, slots=True)
class _Chunk:
    data: bytes


class _Reject(Exception):
    def __init__(self, status: int, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


class RunRoutes:
    """The kit's routes for some functions of one client.

    Args:
        client: the app's client (talks to the engine's REST API).
        functions: the functions these routes may start and show runs of.
        authorize: called before every request with an ``AccessRequest``; return False
            (403) or raise ``AccessDenied`` to refuse. May be ``async`` on async
            frameworks. Required: ``allow_all`` makes the routes public deliberately.
        inputs: per function, a pydantic model (or any callable taking the data dict and
            returning the validated value) that the start's ``data`` must satisfy; a
            failure is a 422 listing the errors.
        poll_interval: how often the events stream looks for progress (seconds).
        keepalive: seconds between SSE comments that keep proxies from closing the stream.
        result_wait: the longest ``GET .../result?wait=`` holds a request (seconds).
    """

    def __init__(
        self,
        client: Client,
        functions: Sequence[Function],
        *,
        authorize: Authorize,
        inputs: Mapping[Function, Any] | None = None,
        poll_interval: float = 0.5,
        keepalive: float = 15.0,
        result_wait: float = 60.0,
    ) -> None:
        if not callable(authorize):
            raise _errors.ConfigError(
                "RunRoutes needs authorize=: a function deciding each request, or "
                "stepline.web.allow_all to make the routes public on purpose"
            )
        if not functions:
            raise _errors.ConfigError("RunRoutes needs at least one function to expose")
        self.client = client
        self.functions = {fn.composite_id: fn for fn in functions}
        for fn in functions:
            self.functions.setdefault(fn.id, fn)
        # runs are shown by their function's full id only: a local id ("app-x" of app
        # "app") may equal another function's full id
        self._exposed = frozenset(fn.composite_id for fn in functions)
        self.authorize = authorize
        self.inputs = {fn.composite_id: model for fn, model in (inputs or {}).items()}
        self.poll_interval = poll_interval
        self.keepalive = keepalive
        self.result_wait = result_wait

    # -- drivers ------------------------------------------------------------------------

    def handle_sync(self, request: WebRequest) -> WebResponse:
        """Answer with blocking I/O (WSGI frameworks); a stream is drained by ``chunks_sync``."""
        return _effects.drive_sync(self._route(request), self._perform_sync)

    async def handle_async(self, request: WebRequest) -> WebResponse:
        """Answer with async I/O; a stream is drained by ``chunks_async``."""
        return await _effects.drive_async(self._route(request), self._perform_async)

    def chunks_sync(self, response: WebResponse) -> Iterator[bytes]:
        """The SSE bytes of a streamed response, as they come (closing it stops polling)."""
        flow = response.stream
        assert flow is not None
        try:
            effect = next(flow)
            while True:
                if isinstance(effect, _Chunk):
                    yield effect.data
                    effect = next(flow)
                else:
                    effect = flow.send(self._perform_sync(effect))
        except StopIteration:
            return
        finally:
            flow.close()

    async def chunks_async(self, response: WebResponse) -> AsyncIterator[bytes]:
        """Async twin of ``chunks_sync``."""
        flow = response.stream
        assert flow is not None
        try:
            effect = next(flow)
            while True:
                if isinstance(effect, _Chunk):
                    yield effect.data
                    effect = next(flow)
                else:
                    effect = flow.send(await self._perform_async(effect))
        except StopIteration:
            return
        finally:
            flow.close()

    def _perform_sync(self, effect: object) -> object:
        if isinstance(effect, _Authorize):
            try:
                verdict = self.authorize(effect.access)
            except AccessDenied as exc:
                return exc  # handed back into the flow, which answers with it
            if inspect.isawaitable(verdict):
                close = getattr(verdict, "close", None)
                if close is not None:
                    close()
                raise _errors.ConfigError("authorize is async; a sync framework needs a sync hook")
            return verdict
        return self.client._sync_transport.perform(effect)

    async def _perform_async(self, effect: object) -> object:
        if isinstance(effect, _Authorize):
            try:
                verdict = self.authorize(effect.access)
                return await verdict if inspect.isawaitable(verdict) else verdict
            except AccessDenied as exc:
                return exc
        return await self.client._async_transport.perform(effect)

    # -- routing ---------------------------------------------------------------------------

    def _route(self, request: WebRequest) -> _effects.Flow[WebResponse]:
        try:
            return (yield from self._dispatch(request))
        except _Reject as exc:
            level = logging.WARNING if exc.status in (401, 403) else logging.INFO
            logger.log(level, "%s %s: %d %s", request.method, request.path, exc.status, exc.message)
            body: dict[str, Any] = {"error": exc.message}
            if exc.detail is not None:
                body["detail"] = exc.detail
            return _json(exc.status, body)
        except _runs.RunNotStartedError as exc:  # flow control said no: the caller may retry
            logger.info("%s %s: 409 %s", request.method, request.path, exc.message)
            return _json(409, {"error": f"the run was not started: {exc.message}"})
        except _runs.ManagementError as exc:
            # the engine is down or refused us: a fault on our side of the app, not the caller's
            logger.error("%s %s: engine error: %s", request.method, request.path, exc)
            return _json(502, {"error": f"the workflow engine failed: {exc.message}"})

    def _dispatch(self, request: WebRequest) -> _effects.Flow[WebResponse]:
        path = request.path.rstrip("/") or "/"
        if path == "/runs":
            if request.method != "POST":
                raise _Reject(405, f"{request.method} not allowed on /runs; use POST")
            return (yield from self._start(request))
        match = _RUN_PATH.match(path)
        if match is None:
            raise _Reject(404, f"no route {path}")
        run_id, rest = match["run"], match["rest"] or ""
        action = {"": "status", "/cancel": "cancel", "/result": "result", "/events": "events"}
        want = "POST" if rest == "/cancel" else "GET"
        if request.method != want:
            raise _Reject(405, f"{request.method} not allowed on {path}; use {want}")
        run = yield from self._visible_run(run_id)
        yield from self._check(AccessRequest(request.native, action[rest], run.function_id, run_id))
        if rest == "":
            return _json(200, run.to_json())
        if rest == "/cancel":
            status = yield from _runs.cancel_flow(self.client.settings, run_id)
            return _json(200, {"run_id": run_id, "status": status.value})
        if rest == "/result":
            return (yield from self._result(run, request.query.get("wait")))
        return WebResponse(200, headers=dict(_SSE_HEADERS), stream=self._events(run))

    def _start(self, request: WebRequest) -> _effects.Flow[WebResponse]:
        if len(request.body) > MAX_BODY:
            raise _Reject(413, f"body larger than {MAX_BODY} bytes")
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise _Reject(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _Reject(400, 'want a JSON object: {"function": "<id>", "data": {...}}')
        name, data, key = body.get("function"), body.get("data", {}), body.get("idempotency_key")
        if not isinstance(name, str) or not name:
            raise _Reject(400, "function: want the id of the function to start")
        if not isinstance(data, dict):
            raise _Reject(400, f"data: want a JSON object, got {type(data).__name__}")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
            raise _Reject(400, "idempotency_key: want a string of 1-256 characters")
        fn = self.functions.get(name)
        # authorized before the function is looked up or the data validated, so a caller
        # who may not start anything learns nothing about the functions or their inputs
        full_id = fn.composite_id if fn is not None else name
        yield from self._check(AccessRequest(request.native, "start", full_id, None, data))
        if fn is None:
            raise _Reject(404, f"function {name!r} cannot be started here")
        data = _validate(self.inputs.get(fn.composite_id), data)
        run_id, created = yield from _runs.start_flow(
            self.client.settings, fn.composite_id, data, key
        )
        base = f"{request.mount.rstrip('/')}/runs/{run_id}"
        links = {"self": base, "result": f"{base}/result", "events": f"{base}/events"}
        links["cancel"] = f"{base}/cancel"
        body = {"run_id": run_id, "function_id": fn.composite_id, "created": created}
        return _json(201 if created else 200, {**body, "links": links})

    def _visible_run(self, run_id: str) -> _effects.Flow[RunInfo]:
        try:
            run = yield from _runs.get_flow(self.client.settings, run_id)
        except _runs.RunNotFoundError:
            raise _Reject(404, f"run {run_id} not found") from None
        if run.function_id not in self._exposed:
            raise _Reject(404, f"run {run_id} not found")  # not one of ours: not shown
        return run

    def _check(self, access: AccessRequest) -> _effects.Flow[None]:
        allowed = yield _Authorize(access)
        if isinstance(allowed, AccessDenied):
            raise _Reject(allowed.status, allowed.message)
        if allowed is not True:
            raise _Reject(403, "forbidden")

    def _result(self, run: RunInfo, wait_text: str | None) -> _effects.Flow[WebResponse]:
        try:
            wait = float(wait_text) if wait_text else 0.0
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= self.result_wait:
            raise _Reject(400, f"wait: want seconds from 0 to {self.result_wait:g}")
        if wait and not run.status.terminal:
            run = yield from _runs.get_flow(self.client.settings, run.run_id, wait=wait)
        view = run.to_json()
        if not run.status.terminal:
            response = _json(202, view)
            response.headers["retry-after"] = "1"
            return response
        return _json(200, view)

    def _events(self, run: RunInfo) -> _effects.Flow[None]:
        """Status and step changes as SSE events until the run ends; a final ``result``.

        The response has started by now, so an engine failure ends the stream with an
        ``error`` event rather than a status.
        """
        try:
            yield from self._progress(run)
        except _runs.ManagementError as exc:
            logger.error("events of run %s: engine error: %s", run.run_id, exc)
            yield _Chunk(_sse("error", {"error": f"the workflow engine failed: {exc.message}"}))

    def _progress(self, run: RunInfo) -> _effects.Flow[None]:
        yield _Chunk(b"retry: 2000\n\n")
        yield _Chunk(_sse("status", run.to_json()))
        seen: dict[str, str] = {}
        status = run.status
        quiet_since = time.monotonic()
        while True:
            steps = yield from _runs.steps_flow(self.client.settings, run.run_id)
            for step in steps:
                state = f"{step.status}:{step.attempts}"
                if seen.get(step.id) != state:
                    seen[step.id] = state
                    quiet_since = time.monotonic()
                    yield _Chunk(_sse("step", step.to_json()))
            if run.status is not status:
                status = run.status
                yield _Chunk(_sse("status", run.to_json()))
            if run.status.terminal:
                yield _Chunk(_sse("result", run.to_json()))
                return
            if time.monotonic() - quiet_since >= self.keepalive:
                quiet_since = time.monotonic()
                yield _Chunk(b": keepalive\n\n")
            yield _effects.Sleep(self.poll_interval)
            run = yield from _runs.get_flow(self.client.settings, run.run_id)


_SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx: do not buffer the stream
}


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _json(status: int, body: object) -> WebResponse:
    return WebResponse(status, json.dumps(body, separators=(",", ":"), default=str).encode())


def _validate(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Run the function's input model over ``data``; a 422 lists what is wrong."""
    if model is None:
        return data
    validate = getattr(model, "model_validate", None)
    if validate is not None:  # a pydantic model
        try:
            value = validate(data)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            errors = getattr(exc, "errors", None)
            detail = (
                json.loads(json.dumps(errors(include_url=False), default=str))
                if callable(errors)
                else str(exc)
            )
            raise _Reject(422, "data does not match the function's input", detail) from None
        dumped: dict[str, Any] = value.model_dump(mode="json")
        return dumped
    try:
        result = model(data)
    except (ValueError, TypeError) as exc:
        raise _Reject(422, f"data does not match the function's input: {exc}") from None
    return result if isinstance(result, dict) else data
