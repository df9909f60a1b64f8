"""The events list's extras: search by a payload expression, replay links.

``GET /v1/events?expression=event.data.amount > 100`` keeps the events (of the other
filters: name, time, cursor) for which the CEL expression is ``true``, ``event`` being
the event as functions receive it (``name``, ``data``, ``id``, ``ts``, ``user``, ``v``).
The store cannot index an expression, so the engine scans: at most ``scan`` events per
request (``DEFAULT_SCAN``, up to ``MAX_SCAN``), in one read transaction, evaluating on the
store's thread. A page that stopped at the scan limit says so (``scan_complete: false``)
and its ``next_cursor`` goes on from the last event examined. An expression that does not
parse, or reads a variable other than ``event``, is a 400 naming the problem.

Every event view also carries ``replay_of`` (the event it replays, or null), and a single
event the ids of its newest ``replays``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepline import _cel
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import views
from stepline.engine._http.wire import ApiError
from stepline.engine._model import EventRecord
from stepline.engine._store import EventFilter, Tx

#: events examined per request by default, and at most (``?scan=``)
DEFAULT_SCAN = 1000
MAX_SCAN = 10_000
#: the longest expression accepted (characters)
MAX_EXPRESSION = 2000
#: replays listed on an event's own view
SHOWN_REPLAYS = 20


def program(text: str | None) -> _cel.Program | None:
    """``?expression=`` compiled; None when absent.

    Raises:
        ApiError: too long, not valid CEL, or reading a variable other than ``event`` (400).
    """
    if text is None or not text.strip():
        return None
    if len(text) > MAX_EXPRESSION:
        raise ApiError(400, f"expression: longer than {MAX_EXPRESSION} characters")
    try:
        compiled = _cel.compile(text)
    except _cel.CelError as exc:
        raise ApiError(400, f"expression: {exc}") from None
    unknown = sorted(compiled.variables - {"event"})
    if unknown:
        raise ApiError(400, f"expression: unknown variable {unknown[0]!r}; only 'event' is defined")
    return compiled


def scan_limit(text: str | None) -> int:
    """``?scan=``: how many events a search examines, 1 to ``MAX_SCAN``."""
    if text is None or text == "":
        return DEFAULT_SCAN
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= MAX_SCAN:
        raise ApiError(400, f"scan: want an integer from 1 to {MAX_SCAN}, got {text!r}")
    return int(text)


async def page(
    engine: Engine,
    where: EventFilter,
    limit: int,
    expression: str | None,
    scan: str | None,
    *,
    extra: Callable[[Tx, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A page of events (``where.limit`` is ``limit + 1``), filtered by ``expression``;
    ``extra`` adds to the page's body in the same read transaction."""
    matcher, budget = program(expression), scan_limit(scan)

    def work(tx: Tx) -> tuple[dict[str, Any], dict[str, str]]:
        if matcher is None:
            found = tx.list_events(where)
            body = views.page(found, limit, views.event, lambda e: e.internal_id)
        else:
            result = tx.browsing.scan_events(
                where, lambda e: matcher.matches({"event": e.payload}), budget, limit + 1
            )
            shown = result.found[:limit]
            if len(result.found) > limit:
                after: str | None = shown[-1].internal_id
            else:
                after = None if result.complete else result.last
            body = {
                "data": [views.event(e) for e in shown],
                "metadata": {
                    "next_cursor": after,
                    "scanned": result.scanned,
                    "scan_limit": budget,
                    "scan_complete": result.complete,
                },
            }
        if extra is not None:
            extra(tx, body)
        ids = [view["internal_id"] for view in body["data"]]
        return body, tx.browsing.replays_of(ids) if ids else {}

    body, links = await engine.store.read(work)
    for view in body["data"]:
        view["replay_of"] = links.get(view["internal_id"])
    return body


async def one(engine: Engine, event_id: str) -> dict[str, Any]:
    """An event by internal id (or its own ``id``), with ``replay_of`` and ``replays``.

    Raises:
        NotFoundError: no such event.
    """

    def work(tx: Tx) -> tuple[EventRecord, dict[str, str], list[str]] | None:
        found = tx.get_event(event_id)
        if found is None:
            return None
        internal = found.internal_id
        return (
            found,
            tx.browsing.replays_of([internal]),
            tx.browsing.replayed_as(internal, SHOWN_REPLAYS),
        )

    read = await engine.store.read(work)
    if read is None:
        raise NotFoundError(f"event {event_id!r} not found")
    found, links, replays = read
    return {**views.event(found), "replay_of": links.get(found.internal_id), "replays": replays}
