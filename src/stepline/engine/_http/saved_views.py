"""REST v1 for saved views: a person's named run queries, with the runs page's columns.

``GET /v1/views`` lists the views of whoever asks (``asking``); ``PUT /v1/views/{name}``
saves one (``{"query": "...", "columns": [...]}``; the query is checked as ``?query=`` is,
the columns against ``COLUMNS``), replacing that person's view of the same name;
``DELETE /v1/views/{name}`` deletes it (404 if there was none). A view is shared by its
URL: the runs page reads the query and the columns from its address, so a link works for
anyone who may read runs, whatever views they saved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import principals, run_search, views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._store import Tx
from stepline.engine._store.saved_views import SavedView

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: the columns the runs page can show, in its default order
COLUMNS = (
    "id",
    "function",
    "status",
    "started",
    "ended",
    "duration",
    "event",
    "version",
    "app",
    "created",
    "attributes",
    "error",
)
#: the most views one principal keeps, and the longest name
MAX_VIEWS = 100
MAX_NAME = 80


def asking(request: Request) -> str:
    """Who is asking: the name of the principal the route's gate found (``principals``):
    a dashboard session's user, the signing key (or whom its caller acts for), ``dev``."""
    return principals.principal(request).name


def view(saved: SavedView) -> dict[str, Any]:
    """A saved view as the API shows it."""
    return {
        "name": saved.name,
        "query": saved.query,
        "columns": list(saved.columns),
        "updated_at": views.timestamp(saved.updated_at),
    }


def checked_name(name: str) -> str:
    """A view's name from the path: 1 to ``MAX_NAME`` printable characters.

    Raises:
        ApiError: empty, too long or holding control characters (400).
    """
    if not name.strip() or len(name) > MAX_NAME or any(ch < " " or ch == "\x7f" for ch in name):
        raise ApiError(
            400, f"name: want 1 to {MAX_NAME} printable characters, got {name[:MAX_NAME]!r}"
        )
    return name


def checked_body(body: Any, now: float) -> tuple[str, tuple[str, ...]]:
    """A view's query and columns from a ``PUT`` body.

    Raises:
        ApiError: not an object, a query that does not compile (with ``details``), or
            columns that are not a list of distinct names from ``COLUMNS`` (400).
    """
    if not isinstance(body, dict):
        raise ApiError(400, 'want a JSON object: {"query": "...", "columns": ["id", ...]}')
    query = body.get("query", "")
    if not isinstance(query, str):
        raise ApiError(400, "query: want a string (a run query, or empty for every run)")
    run_search.compiled(query, now)  # the same checks as ?query=
    columns = body.get("columns", list(COLUMNS[:7]))
    if (
        not isinstance(columns, list)
        or not columns
        or not all(isinstance(c, str) and c in COLUMNS for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise ApiError(400, f"columns: want a list of distinct names from {', '.join(COLUMNS)}")
    return query.strip(), tuple(columns)


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def listing(request: Request) -> Response:
        principal = asking(request)
        found = await engine.store.read(lambda tx: tx.saved_views.list_views(principal))
        return wire.json_response({"data": [view(v) for v in found]})

    async def save(request: Request) -> Response:
        principal = asking(request)
        name = checked_name(request.path_params["name"])
        now = engine.clock.now()
        body = await wire.read_json(request, engine.settings.max_body_bytes)
        query, columns = checked_body(body, now)
        saved = SavedView(principal, name, query, columns, now)

        def work(tx: Tx) -> bool:
            names = {v.name for v in tx.saved_views.list_views(principal)}
            if name not in names and len(names) >= MAX_VIEWS:
                return False
            tx.saved_views.put_view(saved)
            return True

        if not await engine.store.atomic(work):
            raise ApiError(409, f"at most {MAX_VIEWS} saved views each: delete one first")
        return wire.json_response(views.data(view(saved)))

    async def delete(request: Request) -> Response:
        principal = asking(request)
        name = request.path_params["name"]
        gone = await engine.store.atomic(lambda tx: tx.saved_views.delete_view(principal, name))
        if not gone:
            raise NotFoundError(f"no saved view named {name!r}")
        return wire.json_response(views.data({"name": name, "deleted": True}))

    return [
        ("GET", "/v1/views", listing),
        ("PUT", "/v1/views/{name}", save),
        ("DELETE", "/v1/views/{name}", delete),
    ]
