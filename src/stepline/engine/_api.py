"""The engine's HTTP surface: the event API, the SDK-facing routes and REST v1.

Handlers are thin: parse the request, call one ``Engine`` method, render with
``_views``. Errors are mapped to responses in one place (``_failure``), and every
response carries ``X-Inngest-Server-Kind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import starlette.applications
import starlette.datastructures
import starlette.exceptions
import starlette.middleware
import starlette.requests
import starlette.responses
import starlette.routing
import starlette.types

from stepline import _json as _jsonlib
from stepline import _serde
from stepline._identity import VERSION
from stepline._protocol import durations
from stepline._status import RunStatus
from stepline.engine import _auth, _dashboard, _prometheus, _views
from stepline.engine._engine import Engine, NotFoundError, SkippedError
from stepline.engine._events import EventError
from stepline.engine._ids import SeedError
from stepline.engine._rules import RegistrationError
from stepline.engine._store import EventFilter, RunFilter, storable

logger = logging.getLogger("stepline.engine.api")

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 500
#: The longest a ``GET /v1/runs/{id}?wait=`` long-poll holds the request.
MAX_WAIT = 60.0
_STATUSES = {s.value.lower(): s for s in RunStatus}


class ApiError(Exception):
    """A request the API refuses; ``body`` overrides the default ``{"error": message}``."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


def build_app(engine: Engine) -> starlette.applications.Starlette:
    """The ASGI app serving ``engine``; its lifespan starts and stops the engine.

    ``-u`` apps are synced in the background once the engine has started: they answer
    the sync by calling ``/fn/register`` on this very server, which must be listening by
    then. ``app.state.sync_task`` lets the CLI wait for that and report.

    Args:
        engine: the engine to serve.

    Returns:
        A Starlette application.
    """
    api = _Api(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: starlette.applications.Starlette) -> AsyncIterator[None]:
        await engine.start(sync=False)
        app.state.sync_task = asyncio.create_task(engine.sync_apps(), name="stepline-sync")
        try:
            yield
        finally:
            app.state.sync_task.cancel()
            await asyncio.gather(app.state.sync_task, return_exceptions=True)
            await engine.stop()

    return starlette.applications.Starlette(
        routes=api.routes(),
        lifespan=lifespan,
        middleware=[starlette.middleware.Middleware(_ServerKind, kind=engine.settings.server_kind)],
        exception_handlers={starlette.exceptions.HTTPException: _http_error},
    )


class _Api:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings

    def routes(self) -> list[starlette.routing.Route]:
        bearer = self._bearer
        table: list[tuple[str, str, Handler]] = [
            ("POST", "/e/{key}", self.send),
            ("POST", "/invoke/{function_id:path}", bearer(self.invoke)),
            ("POST", "/fn/register", bearer(self.register)),
            ("GET", "/v0/runs/{run_id}/batch", bearer(self.batch)),
            ("GET", "/v0/runs/{run_id}/actions", bearer(self.actions)),
            ("DELETE", "/v0/runs/{run_id}", bearer(self.cancel)),
            ("POST", "/v0/connect/start", self.connect_start),
            ("POST", "/v1/checkpoint/{run_id}/async", bearer(self.checkpoint)),
            ("GET", "/v1/events", bearer(self.events)),
            ("POST", "/v1/events", bearer(self.ingest)),
            ("GET", "/v1/events/{event_id}", bearer(self.event)),
            ("GET", "/v1/events/{event_id}/runs", bearer(self.event_runs)),
            ("GET", "/v1/runs", bearer(self.runs)),
            ("GET", "/v1/runs/{run_id}", bearer(self.run)),
            ("DELETE", "/v1/runs/{run_id}", bearer(self.cancel)),
            ("POST", "/v1/runs/{run_id}/cancel", bearer(self.cancel)),
            ("GET", "/v1/runs/{run_id}/steps", bearer(self.steps)),
            ("POST", "/v1/runs/{run_id}/rerun", bearer(self.rerun)),
            ("GET", "/v1/functions", bearer(self.functions)),
            ("POST", "/v1/functions/{function_id:path}/runs", bearer(self.start)),
            ("GET", "/v1/apps", bearer(self.apps)),
            ("POST", "/v1/apps/sync", bearer(self.sync)),
            ("GET", "/health", self.health),
            ("GET", "/metrics", bearer(self.metrics)),
            ("GET", "/dev", bearer(self.info)),  # open in dev mode, as every bearer route
            *_dashboard.Dashboard(self.settings).table(),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for method, path, handler in table:
            by_path.setdefault(path, {})[method] = handler
        return [
            starlette.routing.Route(path, _endpoint(path, methods), methods=list(methods))
            for path, methods in by_path.items()
        ]

    def _bearer(self, handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            header = request.headers.get("authorization")
            if not (
                _auth.bearer_ok(header, self.settings)
                or _dashboard.signed_in(request, self.settings)
            ):
                raise ApiError(401, "missing or invalid Authorization: Bearer <signing key>")
            return await handler(request)

        return checked

    # -- events and invocations ------------------------------------------------------------

    async def send(self, request: Request) -> Response:
        def refused(status: int, message: str) -> ApiError:
            return ApiError(status, message, {"ids": [], "status": status, "error": message})

        if not _auth.event_key_ok(request.path_params["key"], self.settings):
            raise ApiError(401, "event key not found")
        try:
            body = await self._json(request)
            seed = request.headers.get("x-inngest-event-id-seed") or None
            ids = await self.engine.send(body, seed=seed, headers=request.headers)
        except ApiError as exc:
            raise refused(exc.status, exc.message) from None
        except (EventError, SeedError) as exc:
            raise refused(400, str(exc)) from None
        return _json({"ids": ids, "status": 200})

    async def invoke(self, request: Request) -> Response:
        body = await self._json(request, required=False)
        event_id = await self.engine.invoke(request.path_params["function_id"], body)
        return _json({"id": event_id, "status": 200})

    # -- SDK-facing ---------------------------------------------------------------------------

    async def register(self, request: Request) -> Response:
        try:
            return _json(await self.engine.register(await self._json(request)))
        except RegistrationError as exc:
            raise ApiError(400, str(exc)) from None

    async def batch(self, request: Request) -> Response:
        return _json(await self.engine.run_batch(request.path_params["run_id"]))

    async def actions(self, request: Request) -> Response:
        return _json(await self.engine.run_actions(request.path_params["run_id"]))

    async def checkpoint(self, request: Request) -> Response:
        try:
            await self.engine.checkpoint(request.path_params["run_id"], await self._json(request))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return _json({"ok": True})

    async def connect_start(self, request: Request) -> Response:
        # inngest-py's test harness polls this for readiness; Connect itself is not served
        return _json({})

    # -- REST v1 --------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        q = request.query_params
        limit = _limit(q.get("limit"))
        where = EventFilter(
            name=q.get("name") or None,
            since=_time(q.get("received_after"), "received_after"),
            until=_time(q.get("received_before"), "received_before"),
            cursor=q.get("cursor") or None,
            limit=limit + 1,
        )
        found = await self.engine.list_events(where)
        return _json(_views.page(found, limit, _views.event, lambda e: e.internal_id))

    async def ingest(self, request: Request) -> Response:
        """Store events as ``/e/{key}`` does, for API callers and the dashboard (no event key)."""
        try:
            ids = await self.engine.send(await self._json(request), headers=request.headers)
        except EventError as exc:
            raise ApiError(400, str(exc)) from None
        return _json(_views.data({"ids": ids}))

    async def event(self, request: Request) -> Response:
        found = await self.engine.get_event(request.path_params["event_id"])
        return _json(_views.data(_views.event(found)))

    async def event_runs(self, request: Request) -> Response:
        links = await self.engine.event_runs(request.path_params["event_id"])
        runs = []
        for link in links:
            if link.run_id is not None and link.reason is None:
                with contextlib.suppress(NotFoundError):  # a link outliving its run
                    runs.append(_views.run(await self.engine.get_run(link.run_id)))
        skipped = [_views.skipped(link) for link in links if link.reason is not None]
        return _json({"data": runs, "metadata": {"skipped": skipped}})

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        limit = _limit(q.get("limit"))
        where = RunFilter(
            function_id=q.get("function_id") or None,
            status=_statuses(q.get("status")),
            since=_time(q.get("since"), "since"),
            until=_time(q.get("until"), "until"),
            event_id=q.get("event_id") or None,
            cursor=q.get("cursor") or None,
            limit=limit + 1,
        )
        found = await self.engine.list_runs(where)
        return _json(_views.page(found, limit, _views.run, lambda r: r.run_id))

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        wait = _wait(request.query_params.get("wait"))
        found = await self.engine.get_run(run_id)
        if wait and not found.status.terminal:  # long-poll: answer when it ends
            try:
                found = await self.engine.wait_for_run(run_id, timeout=wait)
            except asyncio.TimeoutError:  # still going: as it is now, not as it was
                found = await self.engine.get_run(run_id)
        return _json(_views.data(_views.run(found, with_events=True)))

    async def start(self, request: Request) -> Response:
        body = await self._json(request, required=False)
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ApiError(400, 'want {"data": {...}, "idempotency_key": "..."}')
        data = body.get("data", {})
        key = body.get("idempotency_key")
        if not isinstance(data, dict):
            raise ApiError(400, f"data: want a JSON object, got {type(data).__name__}")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
            raise ApiError(400, "idempotency_key: want a string of 1-256 characters")
        function_id = request.path_params["function_id"]
        run_id, created = await self.engine.start_function(
            function_id, data, idempotency_key=key, headers=request.headers
        )
        payload = {"run_id": run_id, "function_id": function_id, "created": created}
        return _json(_views.data(payload), 201 if created else 200)

    async def steps(self, request: Request) -> Response:
        found = await self.engine.run_steps(request.path_params["run_id"])
        return _json(_views.data([_views.step(s) for s in found]))

    async def cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await self.engine.cancel(run_id)
        run = await self.engine.get_run(run_id)
        return _json(_views.data({"run_id": run_id, "status": run.status.value}))

    async def rerun(self, request: Request) -> Response:
        new = await self.engine.rerun(request.path_params["run_id"])
        return _json(_views.data({"run_id": new}))

    async def functions(self, request: Request) -> Response:
        found = await self.engine.list_functions()
        return _json(_views.data([_views.function(f) for f in found]))

    async def apps(self, request: Request) -> Response:
        apps = await self.engine.list_apps()
        counts: dict[str, int] = {}
        for fn in await self.engine.list_functions():
            counts[fn.app_id] = counts.get(fn.app_id, 0) + 1
        return _json(_views.data([_views.app(a, counts.get(a.app_id, 0)) for a in apps]))

    async def sync(self, request: Request) -> Response:
        body = await self._json(request, required=False)
        if body is None:
            results = await self.engine.resync()
            return _json(_views.data([_views.sync_result(r) for r in results]))
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, 'url: want {"url": "http(s)://..."} or no body to resync all')
        if not storable(url) or any(c <= " " or c == "\x7f" for c in url):
            raise ApiError(400, "url: must not contain spaces or control characters")
        return _json(_views.data(_views.sync_result(await self.engine.sync_url(url))))

    # -- informational ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        try:
            text = await self.engine.metrics()
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
        return Response(text, media_type=_prometheus.CONTENT_TYPE)

    async def info(self, request: Request) -> Response:
        apps = await self.engine.list_apps()
        return _json(
            {
                "version": VERSION,
                "mode": self.settings.mode,
                "functions": len(self.engine.registry),
                "apps": len(apps),
            }
        )

    # -- bodies -----------------------------------------------------------------------------

    async def _json(self, request: Request, *, required: bool = True) -> Any:
        raw = await _read(request, self.settings.max_body_bytes)
        if not raw.strip():
            if required:
                raise ApiError(400, "request body is empty; want JSON")
            return None
        try:
            return _serde.loads(raw)  # strict: no NaN, no 1e400, no stack-deep nesting
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None


async def _read(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # stream rather than request.body(): a lying or absent Content-Length must not let a
    # client make us buffer an unbounded body
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body larger than {limit} bytes")
            chunks.append(chunk)
    except starlette.requests.ClientDisconnect:
        raise ApiError(400, "client disconnected before sending the whole body") from None
    return b"".join(chunks)


def _wait(text: str | None) -> float:
    """``?wait=`` seconds for a long-poll, 0 to 60."""
    if text is None or text == "":
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:
        raise ApiError(400, f"wait: want seconds from 0 to {MAX_WAIT:g}, got {text!r}")
    return seconds


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return 50
    # isascii: "²".isdigit() is True, but int("²") raises
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"limit: want an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _time(text: str | None, name: str) -> float | None:
    """An RFC 3339 timestamp or unix seconds, as epoch seconds."""
    if text is None or text == "":
        return None
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        return durations.parse_timestamp(text).timestamp()
    except ValueError:
        raise ApiError(
            400, f"{name}: want an RFC 3339 time or unix seconds, got {text!r}"
        ) from None


def _statuses(text: str | None) -> tuple[RunStatus, ...]:
    if not text:
        return ()
    wanted = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part not in _STATUSES:
            known = ", ".join(s.value for s in RunStatus)
            raise ApiError(400, f"status: unknown run status {part!r}; want one of {known}")
        wanted.append(_STATUSES[part])
    return tuple(wanted)


class _JsonResponse(starlette.responses.JSONResponse):
    """Starlette's JSON response, encoded by ``stepline._json`` (orjson when installed).

    What it encodes came from the store or from strict JSON, so it holds no ``NaN``.
    """

    def render(self, content: Any) -> bytes:
        return _jsonlib.dumpb(content)


def _json(body: Any, status: int = 200) -> Response:
    return _JsonResponse(body, status_code=status)


def _endpoint(path: str, methods: dict[str, Handler]) -> Handler:
    """One endpoint per path: dispatch on method, and map every error to a response once."""

    async def endpoint(request: Request) -> Response:
        try:
            # Starlette adds HEAD to every GET route; answer it with the GET handler
            method = "GET" if request.method == "HEAD" else request.method
            _check_text(request)
            return await methods[method](request)
        except Exception as exc:
            return _failure(request, path, exc)

    return endpoint


def _check_text(request: Request) -> None:
    """Refuse ids and query values no store can look up (Postgres errors on NUL)."""
    query = request.query_params
    values = [*request.path_params.values(), *query.keys(), *query.values()]
    if not all(storable(v) for v in values if isinstance(v, str)):
        raise ApiError(400, "path and query values must not contain NUL characters")


def _failure(request: Request, path: str, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        status, message, body = exc.status, exc.message, exc.body
    elif isinstance(exc, NotFoundError):
        status, message, body = 404, str(exc.args[0] if exc.args else exc), None
    elif isinstance(exc, SkippedError):
        status, message = 409, str(exc)
        body = {"error": message, "event_id": exc.event_id}
    else:
        # the route template, not the URL: /e/{key} must never put a key in the logs
        logger.exception("unexpected error in %s %s", request.method, path)
        return _json({"error": "internal server error"}, 500)
    level = logging.INFO if status == 404 else logging.WARNING
    logger.log(level, "rejected %s %s: %d %s", request.method, path, status, message)
    return _json(body if body is not None else {"error": message}, status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router misses (404, 405) as JSON instead of Starlette's plain text."""
    assert isinstance(exc, starlette.exceptions.HTTPException)
    return starlette.responses.JSONResponse(
        {"error": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


class _ServerKind:
    """Stamp ``X-Inngest-Server-Kind`` on every response, errors included."""

    def __init__(self, app: starlette.types.ASGIApp, kind: str) -> None:
        self.app = app
        self.kind = kind

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: starlette.types.Message) -> None:
            if message["type"] == "http.response.start":
                headers = starlette.datastructures.MutableHeaders(scope=message)
                headers["X-Inngest-Server-Kind"] = self.kind
            await send(message)

        await self.app(scope, receive, stamped)


__all__ = ["ApiError", "build_app"]
