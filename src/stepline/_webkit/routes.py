"""The web-app kit's routes, framework-neutral: start, status, cancel, result, live events.

``RunRoutes`` answers five routes under wherever an adapter mounts it::

    POST {mount}/runs                 {"function": "<id>", "data": {...}, "idempotency_key"?}
    GET  {mount}/runs/{run_id}        the run (status, output or error, timestamps)
    POST {mount}/runs/{run_id}/cancel
    GET  {mount}/runs/{run_id}/result ?wait=<s>: 200 once ended, 202 while it runs
    GET  {mount}/runs/{run_id}/events Server-Sent Events: status, step, message, then result
                                      (``stepline._webkit.events``; ``Last-Event-ID`` resumes)

The logic is written once as generators yielding effects (HTTP calls to the engine,
sleeps, the app's authorization hook, SSE chunks); ``handle_sync`` and ``handle_async``
drive them for WSGI and asynchronous frameworks. Only the functions given are exposed:
other functions cannot be started and their runs answer 404. A durable endpoint's
function given here has its runs shown but is not started here (400): its endpoint's
route starts it, recording the request and its caller. Every request goes through
``authorize`` first, which is required: pass ``allow_all`` to make the routes public on
purpose.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from stepline import _errors, _serde
from stepline._api import approvals as _approvals
from stepline._api import ownership
from stepline._api import runs as _runs
from stepline._api.approvals import Approval
from stepline._api.ownership import Principal
from stepline._api.runs import RunInfo
from stepline._client import Client
from stepline._definition.function import Function
from stepline._protocol import event_names
from stepline._serving import csrf as _csrf
from stepline._transport import effects as _effects
from stepline._webkit import approvals as _kit_approvals
from stepline._webkit import events as _kit_events
from stepline._webkit import feed

__all__ = [
    "AccessDenied",
    "AccessRequest",
    "RunRoutes",
    "WebRequest",
    "WebResponse",
    "allow_all",
]

logger = logging.getLogger("stepline.web")

#: The actions ``authorize`` is asked about (and the approvals routes': ``_kit_approvals``).
ACTIONS = ("start", "status", "cancel", "result", "events", *_kit_approvals.ACTIONS)
MAX_BODY = 1024 * 1024
_RUN_PATH = re.compile(r"^/runs/(?P<run>[A-Za-z0-9_-]{1,64})(?P<rest>/cancel|/result|/events)?$")


@dataclasses.dataclass(frozen=True, slots=True)
class AccessRequest:
    """What ``authorize`` decides on.

    Attributes:
        request: the framework's own request object (headers, session, user...).
        action: ``start``, ``status``, ``cancel``, ``result`` or ``events``; on the
            approvals routes ``approvals``, ``approval``, ``approve`` or ``reject``.
        function_id: the function started, or the run's function; None on a run route
            when no run with that id is shown here (authorize is asked all the same, so
            its answer cannot tell which run ids exist).
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


#: ``True`` allows; a ``Principal`` allows as that caller (runs it starts are its own, see
#: ``stepline._api.ownership``); ``False`` or ``AccessDenied`` refuses.
Authorize = Callable[[AccessRequest], "bool | Principal | Awaitable[bool | Principal]"]


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
        headers: the request's headers, names lower-cased; a POST needs a JSON
            ``content-type`` or ``x-stepline-csrf`` (see ``stepline._serving.csrf``).
    """

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes
    native: Any
    mount: str = ""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


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
class Ask:
    """The effect of asking an ``authorize`` hook about ``access`` (``ask_sync``/``ask_async``)."""

    access: AccessRequest


def ask_sync(authorize: Authorize, access: AccessRequest) -> object:
    """The hook's answer; an ``AccessDenied`` it raised is returned, for the flow to answer."""
    try:
        verdict = authorize(access)
    except AccessDenied as exc:
        return exc  # handed back into the flow, which answers with it
    if inspect.isawaitable(verdict):
        close = getattr(verdict, "close", None)
        if close is not None:
            close()
        raise _errors.ConfigError("authorize is async; a sync framework needs a sync hook")
    return verdict


async def ask_async(authorize: Authorize, access: AccessRequest) -> object:
    """Async twin of ``ask_sync`` (the hook may be sync or async)."""
    try:
        verdict = authorize(access)
        return await verdict if inspect.isawaitable(verdict) else verdict
    except AccessDenied as exc:
        return exc


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
        functions: the functions these routes may start and show runs of (a durable
            endpoint's function: show only, its endpoint starts its runs).
        authorize: called before every request with an ``AccessRequest``; return True,
            or ``Principal(id)`` (runs the caller starts are then its own), to allow;
            return False (403) or raise ``AccessDenied`` to refuse. On the run
            routes every refusal but a 401 answers the 404 of an unknown run. May be
            ``async`` on async frameworks. Required: ``allow_all`` makes the routes
            public deliberately.
        inputs: per function, a pydantic model (or any callable taking the data dict and
            returning the validated value) that the start's ``data`` must satisfy; a
            failure is a 422 listing the errors. The run gets the *validated* data: a
            model's ``model_dump(mode="json")``, so fields the model does not declare are
            dropped (pydantic's default ``extra="ignore"``), kept with
            ``model_config = ConfigDict(extra="allow")`` and refused (422) with
            ``extra="forbid"``; a callable's returned dict (any other return value keeps
            the data as sent).
        poll_interval: how often the events streams of a run look at it and its steps
            (seconds): once for all of the run's readers in this process.
        keepalive: seconds between SSE comments that keep proxies from closing the stream.
        result_wait: the longest ``GET .../result?wait=`` holds a request (seconds).
        max_readers_per_run: the most events streams one run may have open here at once;
            one more is a 429 saying so.
        max_readers_per_caller: the most events streams one principal (``authorize``'s
            ``Principal``) may hold open at once; one more is a 429 saying so. Callers
            without a principal are bounded by ``max_readers_per_run`` only.
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
        max_readers_per_run: int = 64,
        max_readers_per_caller: int = 16,
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
        self._feeds = feed.Feeds(
            poll_interval=poll_interval,
            max_readers_per_run=max_readers_per_run,
            max_readers_per_caller=max_readers_per_caller,
        )

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
            while True:
                step = _kit_events.next_chunk(flow)
                chunk = _effects.drive_sync(step, self._perform_sync)
                if chunk is None:
                    return
                yield chunk
        finally:
            flow.close()

    async def chunks_async(self, response: WebResponse) -> AsyncIterator[bytes]:
        """Async twin of ``chunks_sync``."""
        flow = response.stream
        assert flow is not None
        try:
            while True:
                chunk = await _effects.drive_async(
                    _kit_events.next_chunk(flow), self._perform_async
                )
                if chunk is None:
                    return
                yield chunk
        finally:
            flow.close()

    def _perform_sync(self, effect: object) -> object:
        if isinstance(effect, Ask):
            return ask_sync(self.authorize, effect.access)
        if isinstance(effect, feed.Join | feed.Wait):
            return self._feeds.perform_sync(effect, self.client.connection.perform_sync)
        return self.client.connection.perform_sync(effect)

    async def _perform_async(self, effect: object) -> object:
        if isinstance(effect, Ask):
            return await ask_async(self.authorize, effect.access)
        if isinstance(effect, feed.Join | feed.Wait):
            return await self._feeds.perform_async(effect, self.client.connection.perform_async)
        return await self.client.connection.perform_async(effect)

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
            return json_response(exc.status, body)
        except _runs.FunctionNotFoundError as exc:  # the app was not synced: say how
            logger.warning("%s %s: 404 %s", request.method, request.path, exc.message)
            return json_response(404, {"error": exc.message})
        except _runs.RunNotStartedError as exc:  # flow control said no: the caller may retry
            logger.info("%s %s: 409 %s", request.method, request.path, exc.message)
            return json_response(409, {"error": f"the run was not started: {exc.message}"})
        except _runs.ManagementError as exc:
            if exc.http_status == 503:  # up, but cannot work now (its database): try again later
                logger.warning("%s %s: engine unavailable: %s", request.method, request.path, exc)
                message = f"the workflow engine is unavailable, try again later: {exc.message}"
                response = json_response(503, {"error": message})
                if exc.retry_after is not None:
                    response.headers["retry-after"] = str(exc.retry_after)
                return response
            # the engine is down or refused us: a fault on our side of the app, not the caller's
            logger.error("%s %s: engine error: %s", request.method, request.path, exc)
            return json_response(502, {"error": f"the workflow engine failed: {exc.message}"})

    def _dispatch(self, request: WebRequest) -> _effects.Flow[WebResponse]:
        path = request.path.rstrip("/") or "/"
        if path == "/runs":
            if request.method != "POST":
                raise _Reject(405, f"{request.method} not allowed on /runs; use POST")
            _not_cross_site(request)
            return (yield from self._start(request))
        if path == "/approvals" or path.startswith("/approvals/"):
            return (yield from self._approvals(request, path))
        match = _RUN_PATH.match(path)
        if match is None:
            raise _Reject(404, f"no route {path}")
        run_id, rest = match["run"], match["rest"] or ""
        action = {"": "status", "/cancel": "cancel", "/result": "result", "/events": "events"}
        want = "POST" if rest == "/cancel" else "GET"
        if request.method != want:
            raise _Reject(405, f"{request.method} not allowed on {path}; use {want}")
        if want != "GET":
            _not_cross_site(request)
        # authorize is asked whether or not the run exists, and a refusal is the unknown
        # run's 404 (see _check): no answer tells a caller which run ids exist
        run = yield from self._shown_run(run_id)
        function_id = run.function_id if run is not None else None
        access = AccessRequest(request.native, action[rest], function_id, run_id)
        principal = yield from self._check(access)
        if run is None or not ownership.visible(run.started_by, principal):
            if run is not None:
                logger.warning("run %s: the caller is not its starter: not found", run_id)
            raise _not_found(run_id)
        if rest == "":
            return json_response(200, run.to_json())
        if rest == "/cancel":
            status = yield from _runs.cancel_flow(self.client.settings, run_id)
            return json_response(200, {"run_id": run_id, "status": status.value})
        if rest == "/result":
            return (yield from self._result(run, request.query.get("wait")))
        return self._events(run, request, principal)

    def _start(self, request: WebRequest) -> _effects.Flow[WebResponse]:
        if len(request.body) > MAX_BODY:
            raise _Reject(413, f"body larger than {MAX_BODY} bytes")
        try:  # strict: NaN, 1e400, lone surrogates and deep nesting are malformed (400)
            body = _serde.loads(request.body or b"null")
        except ValueError as exc:
            raise _Reject(400, f"body is not valid JSON: {str(exc)[:200]}") from None
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
        principal = yield from self._check(
            AccessRequest(request.native, "start", full_id, None, data)
        )
        if fn is None:
            raise _Reject(404, f"function {name!r} cannot be started here")
        if fn.is_endpoint:  # its endpoint records the request and who calls: start it there
            raise _Reject(400, event_names.endpoint_only_problem(fn.composite_id))
        data = _validate(self.inputs.get(fn.composite_id), data)
        run_id, created = yield from _runs.start_flow(
            self.client.settings, fn.composite_id, data, key, principal
        )
        base = f"{request.mount.rstrip('/')}/runs/{run_id}"
        links = {"self": base, "result": f"{base}/result", "events": f"{base}/events"}
        links["cancel"] = f"{base}/cancel"
        body = {"run_id": run_id, "function_id": fn.composite_id, "created": created}
        return json_response(201 if created else 200, {**body, "links": links})

    def _shown_run(self, run_id: str) -> _effects.Flow[RunInfo | None]:
        """The run, or None when there is none to show here (unknown, or not one of ours)."""
        try:
            run = yield from _runs.get_flow(self.client.settings, run_id)
        except _runs.RunNotFoundError:
            return None
        return run if run.function_id in self._exposed else None

    def _approvals(self, request: WebRequest, path: str) -> _effects.Flow[WebResponse]:
        """The approvals routes (``stepline._webkit.approvals``)."""
        found = _kit_approvals.match(path)
        if found is None:
            raise _Reject(404, f"no route {path}")
        approval_id, action = found
        want = "POST" if action in ("approve", "reject") else "GET"
        if request.method != want:
            raise _Reject(405, f"{request.method} not allowed on {path}; use {want}")
        if want == "POST":
            _not_cross_site(request)
        if approval_id is None:
            principal = yield from self._check(AccessRequest(request.native, action, None))
            return (yield from self._approval_list(request, principal))
        missing = _Reject(404, f"approval {approval_id} not found")
        try:
            approval: Approval | None = yield from _approvals.get_flow(
                self.client.settings, approval_id
            )
        except _approvals.ApprovalNotFoundError:
            approval = None
        if approval is not None and approval.function_id not in self._exposed:
            approval = None
        function_id = approval.function_id if approval is not None else None
        run_id = approval.run_id if approval is not None else None
        access = AccessRequest(request.native, action, function_id, run_id)
        principal = yield from self._check(access, missing=missing)
        if approval is None or not ownership.visible(approval.started_by, principal):
            if approval is not None:
                logger.warning("approval %s: the caller is not its starter: not found", approval_id)
            raise missing
        if action == "approval":
            return json_response(200, _kit_approvals.view(approval, request.mount))
        return (yield from self._decide(request, approval, action, principal, missing))

    def _approval_list(
        self, request: WebRequest, principal: str | None
    ) -> _effects.Flow[WebResponse]:
        shown: list[Approval] = []
        cursor: str | None = None
        while len(shown) < _kit_approvals.MAX_LISTED:
            page, cursor = yield from _approvals.list_flow(
                self.client.settings,
                function_id=None,
                app_id=self.client.app_id,
                limit=100,
                cursor=cursor,
            )
            shown += [a for a in page if self._approval_visible(a, principal)]
            if cursor is None:
                break
        views = [_kit_approvals.view(a, request.mount) for a in shown]
        return json_response(200, {"approvals": views[: _kit_approvals.MAX_LISTED]})

    def _decide(
        self,
        request: WebRequest,
        approval: Approval,
        action: str,
        principal: str | None,
        missing: _Reject,
    ) -> _effects.Flow[WebResponse]:
        if len(request.body) > MAX_BODY:
            raise _Reject(413, f"body larger than {MAX_BODY} bytes")
        by = principal or _kit_approvals.NOBODY
        try:
            body = _kit_approvals.decision_body(action, request.body, by)
        except _kit_approvals.BodyError as exc:
            raise _Reject(400, str(exc)) from None
        settings, approval_id = self.client.settings, approval.approval_id
        try:
            decided = yield from _approvals.decide_flow(settings, approval_id, action, body)
        except _approvals.ApprovalNotFoundError:
            raise missing from None
        except _approvals.ApprovalDecidedError:
            raise _Reject(409, f"approval {approval_id} was decided already") from None
        except _approvals.ApprovalInvalidError as exc:
            message = exc.message.split(": ", 1)[-1]  # the engine's words, not its route
            raise _Reject(400, message) from None
        return json_response(200, _kit_approvals.view(decided, request.mount))

    def _approval_visible(self, approval: Approval, principal: str | None) -> bool:
        return approval.function_id in self._exposed and ownership.visible(
            approval.started_by, principal
        )

    def _check(
        self, access: AccessRequest, *, missing: _Reject | None = None
    ) -> _effects.Flow[str | None]:
        """Ask ``authorize``; returns the caller's principal (None: nobody in particular).

        On a run route (or an approval's: ``missing``) a refusal answers as an unknown run
        (approval) does, but a 401: who the caller is does not depend on the run, and
        "log in" is worth telling.
        """
        answer = yield Ask(access)
        if isinstance(answer, AccessDenied):
            status, message = answer.status, answer.message
        else:
            decided = ownership.verdict(answer)
            if decided.allowed:
                return decided.principal
            status, message = 403, "forbidden"
        if missing is not None and status != 401:
            logger.warning("%s refused (%d %s)", access.action, status, message)
            raise missing
        if access.run_id is not None and status != 401:
            logger.warning("%s %s refused (%d %s)", access.action, access.run_id, status, message)
            raise _not_found(access.run_id)
        raise _Reject(status, message)

    def _events(self, run: RunInfo, request: WebRequest, principal: str | None) -> WebResponse:
        position = _kit_events.stream_position(request.query, request.headers)
        if isinstance(position, str):
            raise _Reject(400, position)
        after, topic = position
        try:
            ticket = self._feeds.admit(run.run_id, principal)
        except feed.TooManyReaders as exc:
            raise _Reject(429, str(exc)) from None
        stream = _kit_events.events_flow(
            self.client.settings,
            run,
            after=after,
            topic=topic,
            keepalive=self.keepalive,
            on_close=ticket.release,
        )
        # a stream never iterated (its client left before it began) lets go too
        weakref.finalize(stream, ticket.release)
        return WebResponse(200, headers=dict(_kit_events.SSE_HEADERS), stream=stream)

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
            response = json_response(202, view)
            response.headers["retry-after"] = "1"
            return response
        return json_response(200, view)


def _not_cross_site(request: WebRequest) -> None:
    refused = _csrf.refusal(request.method, request.path, request.headers)
    if refused is not None:  # a browser could have sent it from another site: see _csrf
        raise _Reject(*refused)


def _not_found(run_id: str) -> _Reject:
    return _Reject(404, f"run {run_id} not found")


def json_response(status: int, body: object) -> WebResponse:
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
