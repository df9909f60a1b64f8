"""REST v1 for durable endpoints: start a run inline, checkpoint its steps, answer its call.

``POST /v1/functions/{function_id}/inline``: ``{"data", "idempotency_key"?, "started_by"?}``
starts (or finds) the run; when the caller may execute its first call now the answer
carries ``inline``: the call's body, the lease's owner token and job id.
``POST /v1/runs/{run_id}/inline/checkpoint``: ``{"job_id", "owner", "steps": [op...]}``
records steps and extends the lease (no steps: a heartbeat; steps extend it once a third
of it has run since it was last extended), answering ``lease_until``.
``POST /v1/runs/{run_id}/inline/answer``: ``{"job_id", "owner", "status", "headers",
"body"}``, the call's answer as an SDK sends it; the run as it then stands comes back.
A lost lease is a 409 (``code: lease_lost``). Each route sits behind the bearer check
and dev-mode guard of every ``/v1`` route (``api.py`` wires them).

The handlers are plain functions of a parsed body (``Routes``): the Starlette routes
read the request and call them, and ``Direct`` calls them for an embedded engine's own
app in-process, without HTTP, on the web request's own event loop: a step's checkpoint
then costs the store's transaction and little else. The store's transactions run where
they always do (SQLite's writer thread, Postgres' pool); the news of a commit goes to
the engine's loop, which owns the worker and the run waiters.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import starlette.requests
import starlette.responses

from stepline import _serde
from stepline._transport import effects
from stepline.engine._endpoints.inline import InlineRuns, LeaseLostError
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError, SkippedError
from stepline.engine._http import answers, views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._model import Run
from stepline.engine._store.faults import StoreUnavailable
from stepline.engine._wire import response

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

logger = logging.getLogger("stepline.engine.api")

#: A lease token or job id is at most this long (ours are far shorter).
_MAX_TOKEN = 200


class Routes:
    """The three routes' logic over parsed bodies; each returns ``(status, JSON body)``.

    Raises (each handler): ``ApiError`` for a refused body or a lost lease (409),
    ``NotFoundError`` for an unknown function, ``SkippedError`` when flow control
    started no run.
    """

    def __init__(self, runs: InlineRuns, max_output: int) -> None:
        self.runs = runs
        self.max_output = max_output

    async def start(
        self, function_id: str, body: object, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """``POST /v1/functions/{function_id}/inline``."""
        checked = answers.start_body(body)
        data, key, started_by = checked["data"], checked["idempotency_key"], checked["started_by"]
        started = await self.runs.start(
            function_id, data, idempotency_key=key, started_by=started_by, headers=headers
        )
        inline = None
        if started.call is not None:
            inline = {
                "call": started.call,
                "owner": started.owner,
                "job_id": started.job_id,
                "lease_seconds": started.lease_seconds,
            }
        answer = {"run": views.run(started.run), "created": started.created, "inline": inline}
        return 201 if started.created else 200, views.data(answer)

    async def checkpoint(self, run_id: str, body: object) -> tuple[int, dict[str, Any]]:
        """``POST /v1/runs/{run_id}/inline/checkpoint``."""
        lease = _lease(body)
        try:
            ops = response.checkpoint_ops(lease, max_output=self.max_output)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            until = await self.runs.checkpoint(run_id, lease["job_id"], lease["owner"], ops)
        except LeaseLostError as exc:
            raise _lost(exc) from None
        return 200, views.data({"lease_until": views.timestamp(until)})

    async def answer(self, run_id: str, body: object) -> tuple[int, dict[str, Any]]:
        """``POST /v1/runs/{run_id}/inline/answer``."""
        lease = _lease(body)
        status, headers, text = lease.get("status"), lease.get("headers", {}), lease.get("body")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ApiError(400, "status: want the answer's HTTP status (100-599)")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ApiError(400, "headers: want an object of strings")
        if not isinstance(text, str):
            raise ApiError(400, "body: want the answer's body as text")
        raw = response.RawResponse(status, headers, text.encode())
        try:
            run = await self.runs.answer(run_id, lease["job_id"], lease["owner"], raw)
        except LeaseLostError as exc:
            raise _lost(exc) from None
        return 200, views.data(views.run(run))


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""
    routes = Routes(InlineRuns(engine), engine.settings.max_step_output_bytes)
    limit = engine.settings.max_body_bytes

    async def start(request: Request) -> Response:
        body = await wire.read_json(request, limit, required=False)
        status, answer = await routes.start(
            request.path_params["function_id"], body, request.headers
        )
        return wire.json_response(answer, status)

    async def checkpoint(request: Request) -> Response:
        body = await wire.read_json(request, limit)
        status, answer = await routes.checkpoint(request.path_params["run_id"], body)
        return wire.json_response(answer, status)

    async def answer(request: Request) -> Response:
        body = await wire.read_json(request, limit)
        status, answered = await routes.answer(request.path_params["run_id"], body)
        return wire.json_response(answered, status)

    return [
        ("POST", "/v1/functions/{function_id:path}/inline", start),
        ("POST", "/v1/runs/{run_id}/inline/checkpoint", checkpoint),
        ("POST", "/v1/runs/{run_id}/inline/answer", answer),
    ]


def _lease(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, 'want a JSON object with "job_id" and "owner"')
    for name in ("job_id", "owner"):
        value = body.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_TOKEN:
            raise ApiError(400, f"{name}: want the lease's {name} from the inline start")
    return body


def _lost(exc: LeaseLostError) -> ApiError:
    return ApiError(409, str(exc), {"error": str(exc), "code": "lease_lost"})


# -- in process: an embedded engine's own app, without HTTP ------------------------------

#: An absolute URL's scheme and authority, then one of the routes' paths, then any query
#: or fragment: what ``urllib.parse.urlsplit`` would take apart, in one match
_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*"
    r"/v1/(?:functions/(?P<fn>[^/?#]+)/inline|runs/(?P<run>[^/?#]+)/inline/(?P<what>checkpoint|answer))"
    r"(?:[?#].*)?",
    re.DOTALL,
)
_JSON = {"content-type": "application/json"}


class Direct:
    """Answers the durable-endpoint requests of an embedded engine's own client.

    Args:
        engine: the running engine.
        loop: the engine's event loop (commits are reported there).
    """

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        def committed(wake: bool, ended: Sequence[Run] | None) -> None:
            # on the engine's loop only when the worker or a caller waiting for the run
            # needs the news (``Engine.committed_threadsafe``'s test, posted to ``loop``)
            if wake or engine.concerned(ended):
                loop.call_soon_threadsafe(engine.committed, wake, ended)

        self._routes = Routes(InlineRuns(engine, committed), engine.settings.max_step_output_bytes)
        self._limit = engine.settings.max_body_bytes

    def handles(self, request: effects.HttpRequest) -> bool:
        """Whether ``request`` is one of the durable-endpoint routes."""
        return request.method == "POST" and _match(request.url) is not None

    async def perform(self, request: effects.HttpRequest) -> effects.HttpResponse:
        """Answer ``request`` as the REST route would (status, JSON body)."""
        match = _match(request.url)
        assert match is not None, "perform only what handles() accepts"
        headers = _JSON
        try:
            status, answer = await self._route(match, request)
        except ApiError as exc:
            status, answer = exc.status, exc.body or {"error": exc.message}
        except NotFoundError as exc:
            status, answer = 404, {"error": str(exc.args[0] if exc.args else exc)}
        except SkippedError as exc:
            status, answer = 409, {"error": str(exc), "event_id": exc.event_id}
        except StoreUnavailable as exc:  # as _http/faults.py answers it; the guard logged it
            status, answer = exc.status, exc.body()
            headers = {**_JSON, "retry-after": str(exc.retry_after)}
        except Exception:  # a fault of ours: as the API answers it
            logger.exception("unexpected error in an embedded durable-endpoint request")
            status, answer = 500, {"error": "internal server error"}
        return effects.HttpResponse(status, headers, b"", value=answer)  # no JSON round trip

    async def _route(
        self, match: re.Match[str], request: effects.HttpRequest
    ) -> tuple[int, dict[str, Any]]:
        raw = request.body or b""
        if len(raw) > self._limit:
            raise ApiError(413, f"request body larger than {self._limit} bytes")
        body = request.value  # the client's own value: it encoded it (finite) already
        if body is None and raw:
            try:
                body = _serde.loads(raw)
            except ValueError as exc:
                raise ApiError(400, f"body is not valid JSON: {str(exc)[:200]}") from None
        if match["fn"] is not None:
            return await self._routes.start(
                urllib.parse.unquote(match["fn"]), body, request.headers
            )
        if match["what"] == "checkpoint":
            return await self._routes.checkpoint(match["run"], body)
        return await self._routes.answer(match["run"], body)


@functools.lru_cache(maxsize=256)
def _match(url: str) -> re.Match[str] | None:
    """The route of ``url``; cached: each is matched by ``handles`` and again by
    ``perform``, a run's checkpoints share one, and a function's starts another."""
    return _URL.fullmatch(url)
