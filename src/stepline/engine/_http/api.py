"""The engine's HTTP surface: the event API, the SDK-facing routes and REST v1.

Handlers are thin: read the request (``wire``), call one ``Engine`` method, render with
``views`` and answer with ``wire.json_response``. Errors are mapped to responses in one
place (``answers.failure``), and every response carries ``X-Inngest-Server-Kind``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import starlette.applications
import starlette.exceptions
import starlette.middleware
import starlette.requests
import starlette.responses
import starlette.routing

from stepline import _json
from stepline._identity import VERSION
from stepline._serving import access
from stepline._serving.access import Credential, Role
from stepline.engine._apps import registry
from stepline.engine._connect import routes as _connect
from stepline.engine._control import attributes as _control_attributes
from stepline.engine._driver.local import CallLost
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._events import EventError
from stepline.engine._flow.rules import RegistrationError
from stepline.engine._http import answers, event_answer, views, wire
from stepline.engine._http import approvals as _approvals
from stepline.engine._http import attempts as _attempts
from stepline.engine._http import attributes as _attributes
from stepline.engine._http import audit as _audit
from stepline.engine._http import bulk as _bulk
from stepline.engine._http import contract as _contract
from stepline.engine._http import conversations as _conversations
from stepline.engine._http import crons as _crons
from stepline.engine._http import dashboard as _dashboard
from stepline.engine._http import deploy_checks as _deploy_checks
from stepline.engine._http import draining as _draining
from stepline.engine._http import endpoints as _endpoints
from stepline.engine._http import event_replay as _event_replay
from stepline.engine._http import event_search as _event_search
from stepline.engine._http import event_stream as _event_stream
from stepline.engine._http import exports as _exports
from stepline.engine._http import function_metrics as _function_metrics
from stepline.engine._http import gate as _gate
from stepline.engine._http import gql as _gql
from stepline.engine._http import guard as _guard
from stepline.engine._http import history as _history
from stepline.engine._http import pause as _pause
from stepline.engine._http import principals as _principals
from stepline.engine._http import ready as _ready
from stepline.engine._http import redaction as _redaction
from stepline.engine._http import run_list as _run_list
from stepline.engine._http import run_queue as _run_queue
from stepline.engine._http import run_search as _run_search
from stepline.engine._http import saved_views as _saved_views
from stepline.engine._http import signals as _signals
from stepline.engine._http import stream as _stream
from stepline.engine._http import tokens as _tokens
from stepline.engine._http import versions as _versions
from stepline.engine._http.wire import ApiError
from stepline.engine._ids import SeedError
from stepline.engine._model import storable
from stepline.engine._observe import prometheus
from stepline.engine._relay import http as _relay_http
from stepline.engine._store import RunFilter
from stepline.engine._store import run_query as _run_query
from stepline.engine._trust import apps as _app_trust

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def build_app(
    engine: Engine, *, guard: bool = True, drain: _draining.Drain | None = None
) -> starlette.applications.Starlette:
    """The ASGI app serving ``engine``; its lifespan starts and stops the engine.

    ``-u`` apps are synced in the background once the engine has started: they answer
    the sync by calling ``/fn/register`` on this very server, which must be listening by
    then. ``app.state.sync_task`` lets the CLI wait for that and report.

    Args:
        engine: the engine to serve.
        guard: in dev mode, refuse what a web page could forge (``_guard``); off only for
            in-process callers no browser reaches (the embedded engine guards its mounts).
        drain: the server's stop (``_draining``): ``/ready`` answers 503 while it drains;
            a fresh one, never begun, when not given.

    Returns:
        A Starlette application.
    """
    drain = _draining.Drain() if drain is None else drain
    api = _Api(engine, drain)
    settings = engine.settings
    middleware = [
        starlette.middleware.Middleware(_draining.Arrivals, drain=drain),
        starlette.middleware.Middleware(_guard.ServerKind, kind=settings.server_kind),
    ]
    if guard and settings.mode == "dev":
        allow_public = settings.allow_public_bind
        middleware.append(starlette.middleware.Middleware(_guard.Guard, allow_public=allow_public))

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
        middleware=middleware,
        exception_handlers={starlette.exceptions.HTTPException: _http_error},
    )


class _Api:
    def __init__(self, engine: Engine, drain: _draining.Drain) -> None:
        self.engine = engine
        self.drain = drain
        self.settings = engine.settings

    def routes(self) -> list[starlette.routing.BaseRoute]:
        """Every route, each behind the check its row in ``stepline._serving.access.ENGINE`` lists.

        Raises:
            RuntimeError: a handler has no row in the table, or a row no handler.
        """
        engine = self.engine
        auditor = _audit.Auditor(engine)
        _contract.check()  # every /v1 route is described in the OpenAPI document
        handlers: list[tuple[str, str, Handler]] = [
            ("POST", "/e/{key}", self.send),
            ("POST", "/v1/functions/{function_id:path}/runs", self.start),
            ("GET", "/v1/runs/{run_id}", self.run),
            ("POST", "/v1/events", self.ingest),
            ("POST", "/invoke/{function_id:path}", self.invoke),
            ("POST", "/fn/register", self.register),
            ("GET", "/v0/runs/{run_id}/batch", self.batch),
            ("GET", "/v0/runs/{run_id}/actions", self.actions),
            ("DELETE", "/v0/runs/{run_id}", self.cancel),
            ("POST", "/v1/checkpoint/{run_id}/async", self.checkpoint),
            ("GET", "/v1/events", self.events),
            ("GET", "/v1/events/{event_id}", self.event),
            ("GET", "/v1/events/{event_id}/runs", self.event_runs),
            ("GET", "/v1/runs", self.runs),
            ("DELETE", "/v1/runs/{run_id}", self.cancel),
            ("POST", "/v1/runs/{run_id}/cancel", self.cancel),
            ("GET", "/v1/runs/{run_id}/steps", self.steps),
            *_attempts.table(engine),
            *_exports.table(engine),
            *_history.table(engine),
            ("POST", "/v1/runs/{run_id}/rerun", self.rerun),
            ("GET", "/v1/functions", self.functions),
            ("GET", "/v1/apps", self.apps),
            ("POST", "/v1/apps/sync", self.sync),
            *_versions.table(engine),
            *_pause.table(engine),
            *_function_metrics.table(engine),
            *_crons.table(engine),
            *_run_queue.table(engine),
            *_tokens.table(engine),
            *_conversations.table(engine),
            *_bulk.table(engine),
            *_relay_http.table(engine),
            *_connect.table(engine.connect, self.settings),
            *_stream.table(engine),
            *_endpoints.table(engine),
            *_attributes.table(engine),
            *_signals.table(engine),
            *_approvals.table(engine),
            *_event_replay.table(engine),
            *_deploy_checks.table(engine),
            *_saved_views.table(engine),
            *_gql.table(engine),
            *_contract.table(),
            *auditor.table(),
            ("GET", "/health", self.health),
            ("GET", "/ready", lambda request: _ready.ready(engine, self.drain)),
            ("GET", "/metrics", self.metrics),
            ("GET", "/dev", self.info),  # open in dev mode, as every signing-key route
            *_dashboard.Dashboard(self.settings, auditor).table(),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for method, path, handler in handlers:
            by_path.setdefault(path, {})[method] = _gate.guarded(
                _row(method, path), handler, self.settings, auditor
            )
        vouch = engine.app_trust.tickets.issue  # a Connect worker proved the key
        sockets = _connect.websocket_routes(engine.connect, engine, vouch, self.settings)
        for path, _ in sockets:
            _row(access.WEBSOCKET, path)  # the gateway's handshake checks the Connect token
        served = {(m, p) for p, methods in by_path.items() for m in methods}
        served |= {(access.WEBSOCKET, path) for path, _ in sockets}
        unserved = [
            f"{r.method} {r.path}" for r in access.ENGINE if (r.method, r.path) not in served
        ]
        if unserved:
            raise RuntimeError(
                f"stepline._serving.access.ENGINE lists routes nothing serves: {unserved}"
            )
        # in the table's order: the router tries routes in order (the busiest first)
        order = {row.path: n for n, row in enumerate(access.ENGINE)}
        routes: list[starlette.routing.BaseRoute] = [
            starlette.routing.Route(path, _endpoint(path, methods), methods=list(methods))
            for path, methods in sorted(by_path.items(), key=lambda item: order[item[0]])
        ]
        return [*routes, *(starlette.routing.WebSocketRoute(p, e) for p, e in sockets)]

    # -- events and invocations ------------------------------------------------------------

    async def send(self, request: Request) -> Response:
        def refused(status: int, message: str) -> ApiError:
            return ApiError(status, message, {"ids": [], "status": status, "error": message})

        try:  # the event key was checked in front (``_gate``)
            body = await self._body(request)
            seed = request.headers.get("x-inngest-event-id-seed") or None
            intake = await self.engine.accept(body, seed=seed, headers=request.headers)
        except ApiError as exc:
            raise refused(exc.status, exc.message) from None
        except (EventError, SeedError) as exc:
            raise refused(400, str(exc)) from None
        return event_answer.event_api(intake, "/e/{key}")  # answered, then first calls go

    async def invoke(self, request: Request) -> Response:
        body = await self._body(request, required=False)
        event_id = await self.engine.invoke(request.path_params["function_id"], body)
        return wire.json_response({"id": event_id, "status": 200})

    # -- SDK-facing ---------------------------------------------------------------------------

    async def register(self, request: Request) -> Response:
        try:
            deploy_id = request.query_params.get("deployId")
            body = await self._body(request)
            # inprocess:// and connect:// apps are the engine's own to register
            _app_trust.refuse_reserved(registry.parse_app(body, deploy_id=deploy_id))
            return wire.json_response(await self.engine.register(body, deploy_id=deploy_id))
        except RegistrationError as exc:  # 403: a move that failed the trust probe; 409: ids
            raise ApiError(getattr(exc, "status", 400), str(exc)) from None

    async def batch(self, request: Request) -> Response:
        return wire.json_response(await self.engine.run_batch(request.path_params["run_id"]))

    async def actions(self, request: Request) -> Response:
        return wire.json_response(await self.engine.run_actions(request.path_params["run_id"]))

    async def checkpoint(self, request: Request) -> Response:
        try:
            await self.engine.checkpoint(
                request.path_params["run_id"],
                await self._body(request),
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except CallLost as exc:
            raise ApiError(409, str(exc)) from None
        return wire.json_response({"ok": True})

    # -- REST v1 --------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        expression = request.query_params.get("expression")
        if expression and _redaction.reads_payloads(expression, ("event",)):
            _principals.require(request, Role.OPERATOR, "a search over event payloads")
        return wire.json_response(await _event_stream.listing(self.engine, request.query_params))

    async def ingest(self, request: Request) -> Response:
        """Store events as ``/e/{key}`` does, for API callers and the dashboard (no event key)."""
        try:
            intake = await self.engine.accept(await self._body(request), headers=request.headers)
        except EventError as exc:
            raise ApiError(400, str(exc)) from None
        return event_answer.rest(intake, "/v1/events")

    async def event(self, request: Request) -> Response:
        found = await _event_search.one(self.engine, request.path_params["event_id"])
        return wire.json_response(views.data(found))

    async def event_runs(self, request: Request) -> Response:
        links = await self.engine.event_runs(request.path_params["event_id"])
        runs = []
        for link in links:
            if link.run_id is not None and link.reason is None:
                with contextlib.suppress(NotFoundError):  # a link outliving its run
                    runs.append(views.run(await self.engine.get_run(link.run_id)))
        skipped = [views.skipped(link) for link in links if link.reason is not None]
        return wire.json_response({"data": runs, "metadata": {"skipped": skipped}})

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        limit = wire.page_limit(q.get("limit"))
        where = RunFilter(
            function_id=q.get("function_id") or None,
            status=wire.run_statuses(q.get("status")),
            since=wire.timestamp(q.get("since"), "since"),
            until=wire.timestamp(q.get("until"), "until"),
            event_id=q.get("event_id") or None,
            cursor=q.get("cursor") or None,
            limit=limit + 1,
            version=q.get("version") or None,
            attributes=_control_attributes.query_filter(q.getlist("attribute")),
            run_id_prefix=_run_list.run_id_prefix(q.get("run_id")),
            parent_run_id=q.get("parent_run_id") or None,
        )
        text = q.get("query")
        if text and _redaction.reads_payloads(text, _run_query.FIELDS):
            _principals.require(request, Role.OPERATOR, "a run query over payloads")
        query = _run_search.compiled(text, self.engine.clock.now())
        if query is not None:
            found = await _run_search.page(self.engine, where, limit, query, q.get("scan"))
            return wire.json_response(found)
        return wire.json_response(await _run_list.page(self.engine, where, limit))

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        wait = wire.wait_seconds(request.query_params.get("wait"))
        found = await self.engine.long_poll(run_id, wait)  # answers when it ends
        return wire.json_response(views.data(views.run(found, with_events=True)))

    async def start(self, request: Request) -> Response:
        wanted = answers.start_request(await self._body(request, required=False))
        wait = wire.wait_seconds(request.query_params.get("wait"))
        function_id = request.path_params["function_id"]
        run_id, created, watched = await self.engine.start_watched(
            function_id,
            wanted.data,
            watch=bool(wait),
            idempotency_key=wanted.idempotency_key,
            headers=request.headers,
            started_by=wanted.started_by,
            run_id=wanted.run_id,
            attributes=wanted.attributes,
        )
        run = None
        if wait:  # the run as it is when it ends, or after ``wait`` seconds
            try:
                run = await self.engine.long_poll(run_id, wait, watched=watched)
            except Exception as exc:
                answers.wait_failed(run_id, exc)
        view = answers.started_view(run_id, function_id, created, run)
        return wire.json_response(view, 201 if created else 200)

    async def steps(self, request: Request) -> Response:
        run, found, due = await self.engine.run_retries(request.path_params["run_id"])
        fn = self.engine.registry.get(run.function_id)
        most = fn.max_attempts if fn is not None else None
        shown = [views.step(s, max_attempts=most, retry_at=due.get(s.step_id)) for s in found]
        return wire.json_response(views.data(shown))

    async def cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await self.engine.cancel(run_id)
        run = await self.engine.get_run(run_id)
        return wire.json_response(views.data({"run_id": run_id, "status": run.status.value}))

    async def rerun(self, request: Request) -> Response:
        new = await self.engine.rerun(request.path_params["run_id"])
        return wire.json_response(views.data({"run_id": new}))

    async def functions(self, request: Request) -> Response:
        found, paused = await self.engine.list_functions(), await self.engine.paused()
        shown = [views.function(f, paused.get(f.function_id)) for f in found]
        return wire.json_response(views.data(shown))

    async def apps(self, request: Request) -> Response:
        apps = await self.engine.list_apps()
        counts: dict[str, int] = {}
        for fn in await self.engine.list_functions():
            counts[fn.app_id] = counts.get(fn.app_id, 0) + 1
        return wire.json_response(views.data([views.app(a, counts.get(a.app_id, 0)) for a in apps]))

    async def sync(self, request: Request) -> Response:
        # only the signing key vouches for where an app moves: a session's sync (of the
        # apps registered, or of a URL someone typed) leaves a move to the trust probe
        vouch = _gate.credential(request) is Credential.SIGNING_KEY
        body = await self._body(request, required=False)
        if body is None:
            results = await self.engine.resync(vouch=vouch)
            return wire.json_response(views.data([views.sync_result(r) for r in results]))
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, 'url: want {"url": "http(s)://..."} or no body to resync all')
        if not storable(url) or any(c <= " " or c == "\x7f" for c in url):
            raise ApiError(400, "url: must not contain spaces or control characters")
        result = await self.engine.sync_url(url, vouch=vouch)
        return wire.json_response(views.data(views.sync_result(result)))

    # -- informational ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return wire.json_response({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        try:
            text = await self.engine.metrics()
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
        return Response(text, media_type=prometheus.CONTENT_TYPE)

    async def info(self, request: Request) -> Response:
        apps = await self.engine.list_apps()
        return wire.json_response(
            {
                "version": VERSION,
                "mode": self.settings.mode,
                "functions": len(self.engine.registry),
                "apps": len(apps),
            }
        )

    async def _body(self, request: Request, *, required: bool = True) -> Any:
        """The request's JSON body, within the engine's body limit."""
        return await wire.read_json(request, self.settings.max_body_bytes, required=required)


def _row(method: str, path: str) -> access.Route:
    """The table's row of a route; a route without one is a bug caught at start."""
    row = access.engine_row(method, path)
    if row is None:
        raise RuntimeError(
            f"{method} {path} has no row in stepline._serving.access.ENGINE: every route the "
            "engine serves must say there which credentials it accepts"
        )
    return row


def _endpoint(path: str, methods: dict[str, Handler]) -> Handler:
    """One endpoint per path: dispatch on method, and map every error to a response once."""

    described = path.startswith(_contract.document.PREFIX)

    async def endpoint(request: Request) -> Response:
        try:
            # Starlette adds HEAD to every GET route; answer it with the GET handler
            method = "GET" if request.method == "HEAD" else request.method
            _check_text(request)
            response = await methods[method](request)
        except Exception as exc:
            response = _failure(request, path, exc)
        return _one_error_object(response) if described else response

    return endpoint


def _one_error_object(response: Response) -> Response:
    """A ``/v1`` refusal as the document's ``Error`` (``wire.error_object``), whichever part
    of the engine wrote it: its handler, the credential or role check, or ``_failure``."""
    if response.status_code < 400:
        return response
    body = getattr(response, "body", None)
    kind = response.headers.get("content-type", "")
    if not isinstance(body, bytes) or not kind.startswith("application/json"):
        return response
    try:
        found = _json.loads(body)
    except ValueError:
        return response
    if not isinstance(found, dict) or not isinstance(found.get("error"), str):
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    fixed = wire.json_response(wire.error_object(response.status_code, found), response.status_code)
    fixed.headers.update(headers)
    return fixed


def _check_text(request: Request) -> None:
    """Refuse ids and query values no store can look up (Postgres errors on NUL)."""
    query = request.query_params
    values = [*request.path_params.values(), *query.keys(), *query.values()]
    if not all(storable(v) for v in values if isinstance(v, str)):
        raise ApiError(400, "path and query values must not contain NUL characters")


def _failure(request: Request, path: str, exc: Exception) -> Response:
    answer = answers.failure(request.method, path, exc)
    response = wire.json_response(answer.body, answer.status)
    response.headers.update(answer.headers)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router misses (404, 405) as JSON instead of Starlette's plain text."""
    assert isinstance(exc, starlette.exceptions.HTTPException)
    return starlette.responses.JSONResponse(
        wire.error_body(exc.status_code, str(exc.detail)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


__all__ = ["build_app"]
