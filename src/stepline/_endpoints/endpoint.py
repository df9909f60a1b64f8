"""``Endpoint``: a durable route, framework-neutral (each framework wraps it in its idiom).

The handler is declared as a function of the client's app (served by the app's serve
endpoint with its other functions, so the engine can resume it) and answers requests:

0. A form or ``text/plain`` POST a browser sent from another site is refused (403)
   unless the endpoint takes them (``cross_site=True``).
1. ``authorize`` (optional) decides, and may name the caller (``Principal``); else the
   ``caller`` hook may name them (the app authenticated in the framework). The run is
   then theirs (the kit shows it to them only; idempotency keys are scoped to them).
2. The run starts; an ``Idempotency-Key`` header returns the run an earlier request
   with that key started (its response once it has ended, else 202). A key on a request
   carrying credentials from an unknown caller is refused (400): it would be everyone's.
3. The handler runs inline, each step persisted before the next; returning within the
   request answers its response, with the run id in ``X-Stepline-Run-Id``.
4. A sleep, a wait, an invoke, a parallel group, a step failure to retry or the time
   budget hands the run to the engine, and the request answers ``202 Accepted`` with
   ``Location`` at the kit's result route (``run_routes``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, cast

from typing_extensions import Unpack

from stepline import _errors
from stepline._api import ownership
from stepline._api import runs as _runs
from stepline._client import Client
from stepline._comm.loop import LoopThread
from stepline._definition.function import FunctionOptionArgs, declare
from stepline._definition.triggers import TriggerEvent
from stepline._endpoints import callers, inline, redaction, registry, response
from stepline._endpoints.context import endpoint_context
from stepline._endpoints.request import EndpointRequest
from stepline._execution import tracing
from stepline._execution.context import Context, SyncContext
from stepline._protocol import event_names
from stepline._serving import csrf
from stepline._status import RunStatus
from stepline._transport import effects
from stepline._webkit import routes as _webkit
from stepline._webkit.routes import AccessRequest, Authorize, WebRequest, WebResponse

__all__ = ["ENDPOINT_EVENT", "DurableRoute", "Endpoint", "EndpointArgs", "stamp"]

logger = logging.getLogger("stepline.endpoints")

#: Each endpoint's function is triggered by ``f"{ENDPOINT_EVENT}.{id}"`` (a reserved name).
ENDPOINT_EVENT = event_names.ENDPOINT_EVENT
#: The largest request body an endpoint takes by default (bytes).
MAX_BODY = 1024 * 1024
_KEY_HEADER = "idempotency-key"
_UNSCOPED_KEY = (
    "Idempotency-Key: this request carries credentials but the endpoint does not know its "
    "caller, so the key cannot be scoped to them; give the endpoint caller= (a function of "
    "the request returning the caller's id) or an authorize that returns a Principal"
)
_CROSS_SITE = (
    "a page on another site may have sent this POST ({why}): refused, as the browser "
    "sends the user's cookies with it; send JSON (Content-Type: application/json) or the "
    "header X-Stepline-Csrf: 1, or declare the endpoint with cross_site=True"
)


class EndpointArgs(FunctionOptionArgs, total=False):
    """What every framework's ``durable(...)`` takes as keywords: ``Endpoint``'s options."""

    id: str | None
    authorize: Authorize | None
    budget: float
    run_routes: str
    keep_headers: Iterable[str]
    keep_query: Iterable[str]
    max_body: int
    caller: callers.Caller | None
    cross_site: bool


class DurableRoute(Protocol):
    """A framework's view made by its ``durable(...)`` decorator.

    Attributes:
        endpoint: the route's logic; ``endpoint.function`` is the durable function to give
            the web kit's run routes (where a suspended request's ``Location`` points).
    """

    endpoint: Endpoint

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The view, called by the framework."""
        ...


def stamp(
    view: Callable[..., Any], handler: Callable[..., Any], endpoint: Endpoint
) -> DurableRoute:
    """``view`` dressed as ``handler``, keeping ``endpoint``: what every ``durable`` returns.

    The view (a function, or Tornado's handler class) takes the handler's name, qualified
    name, module and docstring, so the framework's route names, OpenAPI operations and
    error pages show the user's handler, not the adapter's wrapper; ``view.endpoint`` is
    the route's logic (its function for the kit's run routes).
    """
    name = getattr(handler, "__name__", "durable_endpoint")
    view.__name__ = name
    view.__qualname__ = getattr(handler, "__qualname__", name)
    view.__module__ = getattr(handler, "__module__", view.__module__)
    view.__doc__ = handler.__doc__
    route = cast(DurableRoute, view)
    route.endpoint = endpoint
    return route


class Endpoint:
    """A durable route's logic; frameworks wrap it (``stepline.fastapi.durable`` ...).

    Args:
        client: the app's client.
        handler: ``async def handler(ctx: EndpointContext)`` or a plain ``def`` taking a
            ``SyncEndpointContext``; returns a JSON-able value or an ``EndpointResponse``.
        id: the function's id (default: the handler's name, ``_`` as ``-``).
        authorize: called before a run starts with an ``AccessRequest`` (action
            ``start``); return True or ``Principal(id)`` to allow, False or raise
            ``AccessDenied`` to refuse. Optional: the framework's own authentication
            runs first either way.
        budget: seconds the request may spend in the handler before handing the run
            to the engine at the next step (202).
        run_routes: the prefix the web kit's run routes are mounted at: ``Location``
            is ``{run_routes}/runs/{run_id}/result``.
        keep_headers: header names stored with the run besides ``STORED_HEADERS`` (the
            rest are dropped: they may carry credentials).
        keep_query: query parameter names stored as sent although they look like
            credentials (``access_token``, ``api_key``...: stored ``[redacted]``).
        max_body: the largest request body taken (413 past it).
        caller: who sent the request, when the framework authenticated it: called with
            the framework's request, returns the caller's id (``"user:42"``), a
            ``Principal`` or None. Used when ``authorize`` names no ``Principal``; the
            run is then the caller's and ``Idempotency-Key`` scoped to them. A request
            carrying credentials (a cookie, a token) whose caller is unknown gets 400 for
            an ``Idempotency-Key``: it cannot be scoped to them.
        cross_site: take form and ``text/plain`` POSTs a browser sends from another
            site (a payment provider's form post back). By default they are refused
            with 403 before ``authorize`` (``stepline._serving.csrf.cross_site``): such a post
            carries the user's cookies, unasked.
        **options: the function's options, as ``client.function`` takes them
            (``retries``, ``concurrency``, ``throttle``, ``rate_limit``...).
    """

    def __init__(
        self,
        client: Client,
        handler: Callable[..., Any],
        *,
        id: str | None = None,
        authorize: Authorize | None = None,
        budget: float = 10.0,
        run_routes: str = "",
        keep_headers: Iterable[str] = (),
        keep_query: Iterable[str] = (),
        max_body: int = MAX_BODY,
        caller: callers.Caller | None = None,
        cross_site: bool = False,
        **options: Unpack[FunctionOptionArgs],
    ) -> None:
        local_id = id or getattr(handler, "__name__", "").replace("_", "-")
        if not 0 < budget <= 3600:
            raise _errors.ConfigError(f"endpoint {local_id!r}: budget must be 0-3600 seconds")
        self.client = client
        self.handler = handler
        self.authorize = authorize
        self.budget = float(budget)
        self.run_routes = run_routes.rstrip("/")
        self.keep_headers = tuple(keep_headers)
        self.keep_query = tuple(keep_query)
        self.max_body = max_body
        self.caller = caller
        self.cross_site = cross_site
        trigger = TriggerEvent(event=f"{ENDPOINT_EVENT}.{local_id}")
        self.function = declare(client.app_id, id=local_id, trigger=trigger, **options)(
            _wrapped(handler)
        )
        self.function.__doc__ = handler.__doc__
        registry.add(client, self.function)
        #: runs an ``async def`` handler for a sync framework (started on first use)
        self._loop_thread = LoopThread()

    def __repr__(self) -> str:
        return f"<stepline.Endpoint {self.function.composite_id!r}>"

    # -- drivers ------------------------------------------------------------------------

    def handle_sync(
        self, request: WebRequest, path_params: Mapping[str, Any] | None = None
    ) -> WebResponse:
        """Answer ``request`` with blocking I/O (WSGI frameworks, threads)."""
        return effects.drive_sync(self._flow(request, path_params or {}), self._perform_sync)

    async def handle_async(
        self, request: WebRequest, path_params: Mapping[str, Any] | None = None
    ) -> WebResponse:
        """Answer ``request`` with async I/O (a plain ``def`` handler runs in a thread)."""
        flow = self._flow(request, path_params or {})
        return await effects.drive_async(flow, self._perform_async)

    def _perform_sync(self, effect: object) -> Any:
        if isinstance(effect, inline.Execute):
            if effect.function.is_async:  # under a sync framework: on a private loop thread
                return self._loop_thread.run(inline.execute_async(self.client, effect, self))
            return inline.execute_sync(self.client, effect, self)
        if isinstance(effect, _webkit.Ask):
            assert self.authorize is not None
            return _webkit.ask_sync(self.authorize, effect.access)
        if isinstance(effect, callers.Identify):
            assert self.caller is not None
            return callers.identify_sync(self.caller, effect.request)
        if isinstance(effect, effects.HttpRequest) and (direct := _direct(self.client, effect)):
            # an embedded engine: no HTTP, on the private loop thread
            return self._loop_thread.run(direct.perform(effect))
        return self.client.connection.perform_sync(effect)

    async def _perform_async(self, effect: object) -> Any:
        if isinstance(effect, inline.Execute):
            return await inline.execute_async(self.client, effect, self)
        if isinstance(effect, _webkit.Ask):
            assert self.authorize is not None
            return await _webkit.ask_async(self.authorize, effect.access)
        if isinstance(effect, callers.Identify):
            assert self.caller is not None
            return await callers.identify_async(self.caller, effect.request)
        if isinstance(effect, effects.HttpRequest) and (direct := _direct(self.client, effect)):
            return await direct.perform(effect)  # an embedded engine: no HTTP, on this loop
        return await self.client.connection.perform_async(effect)

    # ``inline.Performers``: how the checkpoints made during the handler are sent
    perform_sync = _perform_sync
    perform_async = _perform_async

    # -- the logic, once ----------------------------------------------------------------

    def _flow(self, web: WebRequest, path_params: Mapping[str, Any]) -> effects.Flow[WebResponse]:
        fn_id = self.function.composite_id
        if len(web.body) > self.max_body:
            return _problem(413, f"the request body is larger than {self.max_body} bytes")
        if not self.cross_site and (why := csrf.cross_site(web.method, web.headers)):
            return _problem(403, _CROSS_SITE.format(why=why))
        key = web.headers.get(_KEY_HEADER)
        if key is not None and not 0 < len(key) <= 256:
            return _problem(400, "Idempotency-Key: want 1-256 characters")
        principal = None
        if self.authorize is not None:
            answer = yield _webkit.Ask(AccessRequest(web.native, "start", fn_id))
            if isinstance(answer, _webkit.AccessDenied):
                return _problem(answer.status, answer.message)
            verdict = ownership.verdict(answer)
            if not verdict.allowed:
                return _problem(403, "forbidden")
            principal = verdict.principal
        if principal is None and self.caller is not None:
            principal = yield callers.Identify(web.native)
        if (
            key is not None
            and principal is None
            and redaction.carries_credentials(web.headers, web.query)
        ):  # a key shared by every user: the next one sending it would get this response
            return _problem(400, _UNSCOPED_KEY)
        request = EndpointRequest(
            method=web.method,
            path=web.path,
            query=redaction.stored_query(web.query, self.keep_query),
            headers=redaction.stored_headers(web.headers, self.keep_headers),
            body=web.body,
            path_params=dict(path_params),
            principal=principal,
        )
        settings = self.client.settings
        try:
            data = request.to_data()
        except _errors.OutputUnserializableError as exc:
            return _problem(400, exc.message)
        trace = {"traceparent": web.headers["traceparent"]} if "traceparent" in web.headers else {}
        try:
            started = yield from inline.start_flow(
                settings, fn_id, data, idempotency_key=key, started_by=principal,
                trace=trace or tracing.outgoing_headers(),
            )  # fmt: skip
        except _runs.FunctionNotFoundError as exc:
            logger.error("durable endpoint %s: %s", web.path, exc.message)
            return _problem(500, f"the endpoint's function is not registered: {exc.message}")
        except _runs.RunNotStartedError as exc:  # rate limited, singleton: try later
            logger.info("durable endpoint %s: no run started: %s", web.path, exc.message)
            reply = _problem(429, f"no run was started: {exc.message}")
            reply.headers["retry-after"] = "1"
            return reply
        except _runs.ManagementError as exc:
            if exc.http_status == 503:  # up, but cannot work now (its database): as the kit
                logger.warning("durable endpoint %s: engine unavailable: %s", web.path, exc.message)
            else:
                logger.error("durable endpoint %s: engine error: %s", web.path, exc.message)
            reply = _problem(503, f"the workflow engine is not available: {exc.message}")
            if exc.retry_after is not None:  # the engine's own estimate of when to try again
                reply.headers["retry-after"] = str(exc.retry_after)
            return reply
        run = started.run
        if started.lease is None or started.call is None:
            return self._reply(run, replayed=not started.created)
        function = registry.inline(self.client, self.function)
        execute = inline.Execute(function, started.call, started.lease, self.budget)
        answer = yield execute
        if answer is None:  # handed back mid-way: the engine goes on with the run
            return self._accepted(run.run_id)
        try:
            run = yield from inline.answer_flow(settings, started.lease, answer)
        except _runs.ManagementError as exc:  # lost the lease, or the engine went away
            logger.warning("run %s: the engine goes on with it: %s", run.run_id, exc.message)
            return self._accepted(run.run_id)
        return self._reply(run, replayed=False)

    def _reply(self, run: _runs.RunInfo, *, replayed: bool) -> WebResponse:
        if run.status is RunStatus.COMPLETED:
            status, headers, body = response.parts(run.output)
            reply = WebResponse(status, body, headers)
        elif run.status is RunStatus.FAILED:
            error = run.error or {}  # its stack stays in the engine, for the app's developers
            name, message = str(error.get("name", "Error")), str(error.get("message", ""))
            reply = _problem(500, "the endpoint failed", name=name, message=message)
        elif run.status is RunStatus.CANCELLED:
            reply = _problem(409, "the endpoint's run was cancelled")
        else:
            return self._accepted(run.run_id)
        reply.headers[response.RUN_ID_HEADER] = run.run_id
        if replayed:
            reply.headers["idempotent-replayed"] = "true"
        return reply

    def _accepted(self, run_id: str) -> WebResponse:
        base = f"{self.run_routes}/runs/{run_id}"
        links = {"status": base, "result": f"{base}/result", "events": f"{base}/events"}
        reply = _webkit.json_response(202, {"run_id": run_id, "status": "Running", "links": links})
        reply.headers.update(
            {"location": links["result"], "retry-after": "1", response.RUN_ID_HEADER: run_id}
        )
        return reply


def _direct(client: Client, request: effects.HttpRequest) -> registry.DirectPath | None:
    """The embedded engine's in-process path for this engine request, if it takes it."""
    direct = registry.direct(client)
    return direct if direct is not None and direct.handles(request) else None


def _problem(status: int, text: str, **extra: object) -> WebResponse:
    return _webkit.json_response(status, {"error": text, **extra})


def _wrapped(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The function's handler: the endpoint context in, the recorded response out."""
    if inspect.iscoroutinefunction(handler):
        typed: Callable[..., Awaitable[Any]] = handler

        async def run_async(ctx: Context) -> dict[str, Any]:
            return response.encode(await typed(endpoint_context(ctx)))

        return run_async

    def run_sync(ctx: SyncContext) -> dict[str, Any]:
        return response.encode(handler(endpoint_context(ctx)))

    return run_sync
