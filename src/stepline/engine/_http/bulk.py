"""REST v1 for bulk actions and replays (run control).

``POST /v1/bulk/cancel`` and ``POST /v1/bulk/replay`` take ``{"filter": {...},
"idempotency_key": "..."}`` and answer 202 with the action (200 with the earlier one when
the key was used before); ``GET /v1/bulk/{id}`` shows its progress, ``GET /v1/bulk`` lists
actions newest first, ``POST /v1/bulk/{id}/cancel`` stops one before its next batch.
``POST /v1/runs/{id}/replay`` (``{"from_step": "..."}`` or no body) starts a replay of an
ended run: 201 with the new run's id; 404 for an unknown run or step, 409 for a live run.
Behind the same bearer check and dev-mode guard as every ``/v1`` route (``api.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._control import bulk, replay
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._store import Tx
from stepline.engine._store.bulk import BulkAction

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def body(request: Request) -> dict[str, Any]:
        raw = await wire.read_json(request, engine.settings.max_body_bytes, required=False)
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise ApiError(400, "want a JSON object")
        return raw

    def start(action: str) -> Handler:
        async def handler(request: Request) -> Response:
            raw = await body(request)
            key = wire.idempotency_key(raw.get("idempotency_key"))
            try:
                where = bulk.parse_filter(raw.get("filter"), times=_time)
            except bulk.BulkError as exc:
                raise ApiError(exc.status, str(exc)) from None
            now = engine.clock.now()
            found, created = await engine.store.atomic(
                lambda tx: bulk.create(tx, action, where, key, now)
            )
            engine.worker.wake.set()  # its first batch is due now
            answer = {**view(found), "created": created}
            return wire.json_response(views.data(answer), 202 if created else 200)

        return handler

    async def show(request: Request) -> Response:
        bulk_id = request.path_params["bulk_id"]
        found = await engine.store.read(lambda tx: tx.bulk.get_bulk(bulk_id))
        return wire.json_response(views.data(view(_known(found, bulk_id))))

    async def listing(request: Request) -> Response:
        limit = wire.page_limit(request.query_params.get("limit"))
        cursor = request.query_params.get("cursor") or None
        found = await engine.store.read(lambda tx: tx.bulk.list_bulk(cursor, limit + 1))
        return wire.json_response(views.page(found, limit, view, lambda a: a.bulk_id))

    async def stop(request: Request) -> Response:
        bulk_id = request.path_params["bulk_id"]
        now = engine.clock.now()
        found = await engine.store.atomic(lambda tx: bulk.cancel(tx, bulk_id, now))
        return wire.json_response(views.data(view(_known(found, bulk_id))))

    async def replay_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        from_step = (await body(request)).get("from_step")
        if from_step is not None and (not isinstance(from_step, str) or not from_step):
            raise ApiError(400, "from_step: want a step's name or id")
        now = engine.clock.now()

        def work(tx: Tx) -> str:
            run = tx.get_run(run_id)
            fn = engine.registry.get(run.function_id) if run is not None else None
            return replay.replay(tx, fn, run_id, from_step, now)

        try:
            new = await engine.store.atomic(work)
        except replay.LiveRunError as exc:
            raise ApiError(409, str(exc)) from None
        engine.worker.wake.set()
        found = await engine.get_run(new)
        payload = {"run_id": new, **replay.link(found.origin)}
        return wire.json_response(views.data(payload), 201)

    return [
        ("POST", "/v1/bulk/cancel", start("cancel")),
        ("POST", "/v1/bulk/replay", start("replay")),
        ("GET", "/v1/bulk", listing),
        ("GET", "/v1/bulk/{bulk_id}", show),
        ("POST", "/v1/bulk/{bulk_id}/cancel", stop),
        ("POST", "/v1/runs/{run_id}/replay", replay_run),
    ]


def view(action: BulkAction) -> dict[str, Any]:
    """An action as the REST API shows it: its filter, status and counts."""
    where = dict(action.filter)
    for name in ("since", "until"):
        if name in where:
            where[name] = views.timestamp(where[name])
    return {
        "bulk_id": action.bulk_id,
        "action": action.action,
        "filter": where,
        "status": action.status,
        "done": action.status not in bulk.LIVE,
        "idempotency_key": action.idempotency_key,
        "created_at": views.timestamp(action.created_at),
        "updated_at": views.timestamp(action.updated_at),
        "cursor": action.cursor,
        "matched": action.matched,
        "applied": action.applied,
        "skipped": action.skipped,
        "error": action.error,
    }


def _known(found: BulkAction | None, bulk_id: str) -> BulkAction:
    if found is None:
        raise ApiError(404, f"bulk action {bulk_id!r} not found")
    return found


def _time(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ApiError(400, f"{name}: want an RFC 3339 time or unix seconds")
    found = wire.timestamp(str(value), name)
    assert found is not None  # "" is filtered out before
    return found
