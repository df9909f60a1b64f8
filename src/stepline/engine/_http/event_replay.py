"""Replay an event: ``POST /v1/events/{event_id}/replay``.

The engine sends the event's name and payload (``data``, ``user``, ``v``) again as a new
event: a new internal id (its own ``id`` too, so no idempotency key or event-id
deduplication drops it) and a new ``ts``. It triggers functions as any fresh event does,
and names the original in ``replay_of``, written in the transaction that stores it and
fans it out. The engine's own events (``inngest/...``: invocations, run ends) are not
replayed: resending them would resume waits or start runs under another run's id; rerun
or replay the run instead (409).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stepline.engine import _events, _ids
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError, Request, Response
from stepline.engine._model import EventRecord
from stepline.engine._store import Tx

Handler = Callable[[Request], Awaitable[Response]]


def fresh(original: EventRecord, now: float) -> EventRecord:
    """A new event with ``original``'s name and payload, received ``now`` (pure).

    Raises:
        ApiError: ``original`` is one of the engine's own events (409).
    """
    if original.name.startswith(_events.RESERVED_PREFIX):
        raise ApiError(
            409,
            f"{original.name!r} is one of the engine's own events and is not replayed; "
            "rerun or replay its run instead",
        )
    payload = original.payload
    raw = {
        "name": original.name,
        "data": payload.get("data") or {},
        "user": payload.get("user") or {},
        "v": payload.get("v"),
    }
    try:
        return _events.normalise(raw, index=0, now=now, internal_id=_ids.ulid(int(now * 1000)))
    except _events.EventError as exc:  # stored before a rule that now refuses it
        raise ApiError(409, f"the event cannot be sent again: {exc}") from None


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The route: ``POST /v1/events/{event_id}/replay`` (no body)."""

    async def replay(request: Request) -> Response:
        event_id = request.path_params["event_id"]
        now = engine.clock.now()

        def work(tx: Tx) -> tuple[str, str]:
            original = tx.get_event(event_id)
            if original is None:
                raise NotFoundError(f"event {event_id!r} not found")
            record = fresh(original, now)
            if tx.insert_event(record):
                engine.transitions.fanout(tx, record, now)
            tx.browsing.set_replay_of(record.internal_id, original.internal_id)
            return record.internal_id, original.internal_id

        new, original = await engine.store.atomic(work)
        engine.worker.wake.set()
        payload = {"internal_id": new, "id": new, "replay_of": original}
        return wire.json_response(views.data(payload), 201)

    return [("POST", "/v1/events/{event_id}/replay", replay)]
