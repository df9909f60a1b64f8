"""The events list as a stream: follow new events from a cursor, each with its runs.

``GET /v1/events`` takes three more parameters:

- ``internal=false`` leaves out the engine's own events (names under ``inngest/``: a run's
  end, an invocation, a cron tick; and ``stepline/``: durable endpoints' triggers).
- ``runs=true`` gives each event the runs it started (``runs``: id, function, status; at
  most ``RUNS_PER_EVENT``), in one query for the page. Run summaries carry no payload, so
  they stay apart from the event's ``data`` and ``user``.
- ``after=<stream_cursor>`` answers the events received after that position, oldest first
  (``limit`` of them), instead of a page of the newest.

Every page's ``metadata.stream_cursor`` is where the next ``after`` read goes on. Events
are followed by their ``received_at`` (the engine's clock when it stored them), not by id:
an event sent with an id seed or through an outbox carries an id from its sender's time.
A transaction may commit a moment after a later one began, so a cursor that read to the
end trails the engine's clock by ``SETTLE`` seconds: such events are still read, and a
reader may see an event twice (the same ``internal_id``), which it skips.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import starlette.datastructures

from stepline.engine._engine import Engine
from stepline.engine._http import event_search, views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._model import EventRecord
from stepline.engine._store import EventFilter, Tx
from stepline.engine._store.live import LinkedRun

#: seconds a cursor that read to the end stays behind the engine's clock
SETTLE = 2.0
#: runs shown per event (``runs=true``)
RUNS_PER_EVENT = 10
_TRUE, _FALSE = ("true", "1"), ("false", "0")

Position = tuple[float, str]


def flag(text: str | None, name: str, default: bool) -> bool:
    """``?internal=`` / ``?runs=``: true or false."""
    if text is None or text == "":
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ApiError(400, f"{name}: want true or false, got {text[:40]!r}")


def cursor(position: Position) -> str:
    """A stream position as ``after`` takes it: ``<received_at>:<internal_id>``."""
    return f"{position[0]!r}:{position[1]}"


def position(text: str) -> Position:
    """``?after=``, parsed.

    Raises:
        ApiError: not a ``stream_cursor`` of a previous page (400).
    """
    at, _, last = text.partition(":")
    seconds = math.nan
    with contextlib.suppress(ValueError):
        seconds = float(at)
    well_formed = last == "" or (len(last) <= 64 and last.isascii() and last.isalnum())
    if not (math.isfinite(seconds) and well_formed):
        raise ApiError(
            400,
            "after: want the metadata.stream_cursor of a previous page of GET /v1/events "
            f"(<received_at>:<internal_id>), got {text[:80]!r}",
        )
    return seconds, last


def _linked(run: LinkedRun) -> dict[str, Any]:
    return {"run_id": run.run_id, "function_id": run.function_id, "status": run.status}


def with_runs(tx: Tx, body: dict[str, Any]) -> None:
    """Give each event of a page its ``runs`` (one query for the page)."""
    ids = [view["internal_id"] for view in body["data"]]
    found = tx.live.started_runs(ids, RUNS_PER_EVENT) if ids else {}
    for view in body["data"]:
        view["runs"] = [_linked(r) for r in found.get(view["internal_id"], [])]


def settled(now: float) -> Position:
    """Where a reader that has read everything goes on from."""
    return now - SETTLE, ""


async def follow(
    engine: Engine,
    after: Position,
    *,
    internal: bool,
    name: str | None,
    limit: int,
    runs: bool,
) -> dict[str, Any]:
    """The events received after ``after``, oldest first, and the cursor to go on from."""

    def work(tx: Tx) -> dict[str, Any]:
        found = tx.live.stream_events(after, internal=internal, name=name, limit=limit)
        body = {"data": [views.event(e) for e in found], "metadata": {}}
        if runs:
            with_runs(tx, body)
        return {"body": body, "found": found}

    read = await engine.store.read(work)
    found: list[EventRecord] = read["found"]
    body: dict[str, Any] = read["body"]
    nxt = after
    if found:
        last = (found[-1].received_at, found[-1].internal_id)
        nxt = last if len(found) == limit else max(after, min(last, settled(engine.clock.now())))
    else:
        nxt = max(after, settled(engine.clock.now()))
    body["metadata"] = {"stream_cursor": cursor(nxt), "next_cursor": None}
    return body


async def listing(engine: Engine, q: starlette.datastructures.QueryParams) -> dict[str, Any]:
    """``GET /v1/events``: a page of the newest (or older, from ``cursor``; searched by
    ``expression``), or the stream from ``after``."""
    limit = wire.page_limit(q.get("limit"))
    internal = flag(q.get("internal"), "internal", True)
    runs = flag(q.get("runs"), "runs", False)
    name = q.get("name") or None
    after = q.get("after")
    if after:
        for other in ("cursor", "expression", "received_after", "received_before"):
            if q.get(other):
                raise ApiError(
                    400,
                    f"after: follows the stream of new events and cannot be combined with "
                    f"{other}; drop one of them",
                )
        return await follow(
            engine, position(after), internal=internal, name=name, limit=limit, runs=runs
        )
    where = EventFilter(
        name=name,
        since=wire.timestamp(q.get("received_after"), "received_after"),
        until=wire.timestamp(q.get("received_before"), "received_before"),
        cursor=q.get("cursor") or None,
        limit=limit + 1,
        internal=internal,
    )
    extra = with_runs if runs else None
    body = await event_search.page(
        engine, where, limit, q.get("expression"), q.get("scan"), extra=extra
    )
    body["metadata"]["stream_cursor"] = cursor(settled(engine.clock.now()))
    return body
