"""The client's two hot requests, answered without the engine's ASGI app.

A web request that starts a run and waits for its result makes two requests to the
embedded engine: ``POST /v1/functions/{id}/runs`` and ``GET /v1/runs/{id}?wait=`` (or
one, ``POST /v1/functions/{id}/runs?wait=``, from ``client.execute``). Through
the REST app each cost about a quarter of a millisecond of CPU in Starlette's routing and
middleware alone, and, from a blocking caller, crossings to the engine's loop, to the
store's threads and back. Here they are answered directly: from a blocking caller on its
own thread (the start commits there, the wait sleeps on a thread event the engine sets:
``Engine.*_blocking``), from an async caller on the engine's loop with the engine's
coroutines. The client still speaks HTTP to its engine, and the answers are the REST
API's, status, body and log line (``engine._http.answers``); any other request, or one
with a query these routes do not take, goes to the ASGI app.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from stepline import _json
from stepline._protocol import headers as _headers
from stepline._serving import access
from stepline._transport import effects
from stepline.engine._errors import EngineStopped
from stepline.engine._http import answers, auth, gate, views, wire
from stepline.engine._model import storable

if TYPE_CHECKING:
    from stepline.engine import Engine
    from stepline.engine._model import Run

__all__ = ["DirectCall", "answer_async", "answer_sync", "match"]

START_ROUTE = "/v1/functions/{function_id:path}/runs"
RUN_ROUTE = "/v1/runs/{run_id}"
_START = re.compile(r"/v1/functions/([^?#]+)/runs")
_RUN = re.compile(r"/v1/runs/([^/?#]+)")
_WAIT = re.compile(r"wait=([^&#]*)")


@dataclasses.dataclass(frozen=True)
class DirectCall:
    """A request the direct path answers: a start of ``ident`` or a read of run ``ident``."""

    route: str  # START_ROUTE or RUN_ROUTE
    ident: str  # the function id or the run id, percent-decoded
    wait: str | None  # the ``?wait=`` value, unchecked
    request: effects.HttpRequest

    @property
    def body(self) -> bytes:
        """The request's body (empty if none)."""
        return self.request.body or b""

    def checked(self, engine: Engine) -> dict[str, str]:
        """What the REST app checks first (NUL in ids, the bearer token, the body's size);
        returns the request's headers, lower-cased.

        Raises:
            ApiError: 400, 401 or 413, as the REST app answers.
        """
        if not storable(self.ident) or (self.wait is not None and not storable(self.wait)):
            raise wire.ApiError(400, "path and query values must not contain NUL characters")
        headers = {name.lower(): value for name, value in self.request.headers.items()}
        if not auth.bearer_ok(headers.get(_headers.AUTHORIZATION), engine.settings):
            # the REST app's refusal for the route's row (no session reaches this path)
            row = access.engine_row(self.request.method, self.route)
            raise gate.refusal(row.accepts if row else frozenset())
        limit = engine.settings.max_body_bytes
        if len(self.body) > limit:
            raise wire.ApiError(413, f"request body larger than {limit} bytes")
        return headers


def match(request: effects.HttpRequest, origin: str) -> DirectCall | None:
    """The call ``request`` (addressed to ``origin``) makes, if it is one answered here."""
    if not request.url.startswith(origin):
        return None
    path, _, query = request.url[len(origin) :].partition("?")
    wait = _WAIT.fullmatch(query) if query else None
    if query and wait is None:
        return None  # another query: the REST app reads it
    value = urllib.parse.unquote_plus(wait[1]) if wait is not None else None
    if request.method == "POST" and (found := _START.fullmatch(path)):
        return DirectCall(START_ROUTE, urllib.parse.unquote(found[1]), value, request)
    if request.method == "GET" and (found := _RUN.fullmatch(path)):
        return DirectCall(RUN_ROUTE, urllib.parse.unquote(found[1]), value, request)
    return None


@dataclasses.dataclass(frozen=True)
class _StartPlan:
    """A checked start: ``Engine.start_function``'s arguments."""

    function_id: str
    data: dict[str, Any]
    options: dict[str, Any]
    wait: float  # then the run once it ends (or after this many seconds); 0: not


@dataclasses.dataclass(frozen=True)
class _PollPlan:
    """A checked read of a run: ``Engine.long_poll``'s arguments."""

    run_id: str
    wait: float


def answer_sync(engine: Engine, call: DirectCall) -> effects.HttpResponse:
    """Answer ``call`` on the calling thread (one that may block, never the engine's).

    Raises:
        EngineStopped: the engine is not running, or stopped while this waited.
    """
    try:
        op = _plan(engine, call)
        if isinstance(op, _StartPlan):
            run_id, created = engine.start_function_blocking(op.function_id, op.data, **op.options)
            run = None
            if op.wait:
                try:
                    run = engine.long_poll_blocking(run_id, op.wait)
                except EngineStopped:
                    raise
                except Exception as exc:
                    answers.wait_failed(run_id, exc)
            return _started(engine, call, run_id, created, run)
        return _run(engine, engine.long_poll_blocking(op.run_id, op.wait))
    except EngineStopped:
        raise
    except Exception as exc:
        return _failure(engine, call, exc)


async def answer_async(engine: Engine, call: DirectCall) -> effects.HttpResponse:
    """Answer ``call`` on the engine's event loop."""
    try:
        op = _plan(engine, call)
        if isinstance(op, _StartPlan):
            run_id, created, watched = await engine.start_watched(
                op.function_id, op.data, watch=bool(op.wait), **op.options
            )
            run = None
            if op.wait:
                try:
                    run = await engine.long_poll(run_id, op.wait, watched=watched)
                except Exception as exc:
                    answers.wait_failed(run_id, exc)
            return _started(engine, call, run_id, created, run)
        return _run(engine, await engine.long_poll(op.run_id, op.wait))
    except Exception as exc:
        return _failure(engine, call, exc)


def _plan(engine: Engine, call: DirectCall) -> _StartPlan | _PollPlan:
    """The engine call ``call`` asks for, checked as the REST app checks it.

    Raises:
        ApiError, AttributesError: a refusal (4xx).
    """
    headers = call.checked(engine)
    wait = wire.wait_seconds(call.wait)
    if call.route == RUN_ROUTE:
        return _PollPlan(call.ident, wait)
    wanted = answers.start_request(wire.json_body(call.body, required=False))
    options = {
        "idempotency_key": wanted.idempotency_key,
        "headers": headers,
        "started_by": wanted.started_by,
        "run_id": wanted.run_id,
        "attributes": wanted.attributes,
    }
    return _StartPlan(call.ident, wanted.data, options, wait)


def _started(
    engine: Engine, call: DirectCall, run_id: str, created: bool, run: Run | None
) -> effects.HttpResponse:
    view = answers.started_view(run_id, call.ident, created, run)
    return _json_answer(engine, answers.JsonAnswer(201 if created else 200, view))


def _run(engine: Engine, found: Run) -> effects.HttpResponse:
    view = views.data(views.run(found, with_events=True))
    return _json_answer(engine, answers.JsonAnswer(200, view))


def _failure(engine: Engine, call: DirectCall, exc: Exception) -> effects.HttpResponse:
    return _json_answer(engine, answers.failure(call.request.method, call.route, exc))


def _json_answer(engine: Engine, answer: answers.JsonAnswer) -> effects.HttpResponse:
    headers = {
        _headers.CONTENT_TYPE: _headers.JSON,
        _headers.SERVER_KIND: engine.settings.server_kind,
        **answer.headers,
    }
    return effects.HttpResponse(answer.status, headers, _json.dumpb(answer.body))
