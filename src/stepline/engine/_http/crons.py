"""``GET /v1/crons``: every cron trigger of the registered functions, with its schedule.

For each trigger: its next ``NEXT_TICKS`` ticks after now (computed from the schedule,
UTC), the tick the scheduler has queued (one job per trigger, ``starts.schedule_cron``)
and when it fires (the tick plus its jitter), the ticks it missed, its function's pause and
its function's last runs.

Missed ticks are what the scheduler knows of them: its queued tick lies in the past and
every tick from it to now is still to fire (no engine ran to fire them). Each fires once,
late, when an engine runs again; a tick is counted once it is ``LATE`` seconds overdue, so
a tick a worker is about to lease is not. Counting stops at ``MAX_MISSED``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._apps.registry import CronTrigger, FunctionSpec
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._model import Run
from stepline.engine._store import RunFilter, Tx
from stepline.engine._store.live import QueuedTick

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: upcoming ticks shown per trigger
NEXT_TICKS = 3
#: last runs shown per function
LAST_RUNS = 5
#: seconds past its fire time after which a queued tick counts as missed
LATE = 30.0
#: missed ticks counted at most
MAX_MISSED = 1000


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def crons(request: Request) -> Response:
        return wire.json_response(await listing(engine))

    return [("GET", "/v1/crons", crons)]


def upcoming(trigger: CronTrigger, after: float, count: int) -> list[float]:
    """The next ``count`` ticks of ``trigger`` strictly after ``after`` (epoch seconds)."""
    ticks: list[float] = []
    when = _dt.datetime.fromtimestamp(after, _dt.timezone.utc)
    for _ in range(count):
        when = trigger.schedule.next_after(when)
        ticks.append(when.timestamp())
    return ticks


def missed(trigger: CronTrigger, queued: QueuedTick | None, now: float) -> list[float]:
    """The ticks from the queued one on that are ``LATE`` seconds overdue (at most
    ``MAX_MISSED``). Pure."""
    if queued is None or queued.leased or queued.fire_at > now - LATE:
        return []
    found = [queued.tick]
    when = _dt.datetime.fromtimestamp(queued.tick, _dt.timezone.utc)
    while len(found) < MAX_MISSED:
        when = trigger.schedule.next_after(when)
        if when.timestamp() > now - LATE:
            break
        found.append(when.timestamp())
    return found


def _run(record: Run) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "status": record.status.value,
        "created_at": views.timestamp(record.created_at),
        "ended_at": views.timestamp(record.ended_at),
    }


async def listing(engine: Engine) -> dict[str, Any]:
    """Every cron trigger with its ticks and its function's last runs."""
    scheduled: list[FunctionSpec] = sorted(
        (fn for fn in engine.registry if fn.crons), key=lambda fn: fn.function_id
    )

    def work(tx: Tx) -> tuple[list[QueuedTick], dict[str, list[Run]]]:
        last = {
            fn.function_id: tx.list_runs(RunFilter(function_id=fn.function_id, limit=LAST_RUNS))
            for fn in scheduled
        }
        return tx.live.cron_ticks(), last

    ticks, last = await engine.store.read(work)
    paused = await engine.paused()
    now = engine.clock.now()
    queued = {(t.function_id, t.cron): t for t in ticks}
    shown: list[dict[str, Any]] = []
    for fn in scheduled:
        for trigger in fn.crons:
            canonical = trigger.schedule.canonical
            tick = queued.get((fn.function_id, canonical))
            late = missed(trigger, tick, now)
            shown.append(
                {
                    "function_id": fn.function_id,
                    "app_id": fn.app_id,
                    "name": fn.name,
                    "cron": canonical,
                    "timezone": trigger.schedule.zone or "UTC",
                    "jitter": trigger.jitter,
                    "paused": views.pause(paused.get(fn.function_id)),
                    "next_ticks": [views.timestamp(t) for t in upcoming(trigger, now, NEXT_TICKS)],
                    "queued_tick": None if tick is None else views.timestamp(tick.tick),
                    "fires_at": None
                    if tick is None or tick.leased
                    else views.timestamp(tick.fire_at),
                    "missed_ticks": len(late),
                    "missed_since": views.timestamp(late[0]) if late else None,
                    "last_runs": [_run(r) for r in last[fn.function_id]],
                }
            )
    return {"data": shown, "metadata": {"now": views.timestamp(now)}}
