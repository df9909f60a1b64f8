"""``GET /v1/queue``: what each function and concurrency key has in flight, waiting and
throttled, beside the limits configured.

Per function (those with a flow-control limit, or with live runs): runs ``queued`` (not
started yet) and ``running``; of the queued, those ``throttled`` (their first call held to
the function's throttle); calls ``in_flight`` (leased to a worker now) and ``waiting``
(parked on one of the function's own concurrency keys); and its limits. Per concurrency
key with a call in flight or waiting: the slots held (``in_flight``), the calls parked
(``waiting``), its limit, and the function that owns it (None for a key shared by scope
``env`` or ``account``, with the functions that declare such a limit). Each count is one
aggregate query (``tx.live``); nothing reads the runs one by one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._apps.registry import FunctionSpec
from stepline.engine._engine import Engine
from stepline.engine._flow.rules import ConcurrencyRule, FlowRules
from stepline.engine._http import views, wire
from stepline.engine._store import Tx
from stepline.engine._store.live import FunctionLoad

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

_FN = "fn:"


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def queue(request: Request) -> Response:
        return wire.json_response(await listing(engine))

    return [("GET", "/v1/queue", queue)]


def limits(rules: FlowRules) -> dict[str, Any]:
    """A function's flow-control limits as the queue page shows them. Pure."""

    def key(program: Any) -> str | None:
        return None if program is None else str(program.text)

    throttle, rate = rules.throttle, rules.rate_limit
    return {
        "concurrency": [
            {"limit": r.limit, "scope": r.scope, "key": key(r.key)} for r in rules.concurrency
        ],
        "throttle": None
        if throttle is None
        else {
            "limit": throttle.limit,
            "period": throttle.period,
            "burst": throttle.burst,
            "key": key(throttle.key),
        },
        "rate_limit": None
        if rate is None
        else {"limit": rate.limit, "period": rate.period, "key": key(rate.key)},
    }


def owner(
    key: str, functions: Iterable[FunctionSpec]
) -> tuple[FunctionSpec | None, list[str], ConcurrencyRule | None]:
    """Who a concurrency key belongs to: its function (fn scope) and rule, or the
    functions declaring its shared scope and the first such rule. Pure.

    A function's key is ``fn:<function id>:`` or ``fn:<function id>:<key expression>=<value>``
    (``pacing.concurrency_keys``); a shared one is ``<scope>:<value>``.
    """
    if key.startswith(_FN):
        rest = key[len(_FN) :]
        best: FunctionSpec | None = None
        for fn in functions:
            if rest.startswith(f"{fn.function_id}:") and (
                best is None or len(fn.function_id) > len(best.function_id)
            ):
                best = fn
        if best is None:
            return None, [], None
        tail = rest[len(best.function_id) + 1 :]
        for rule in best.flow.concurrency:
            if rule.scope != "fn":
                continue
            if (rule.key is None and tail == "") or (
                rule.key is not None and tail.startswith(f"{rule.key.text}=")
            ):
                return best, [best.function_id], rule
        return best, [best.function_id], None
    scope = key.partition(":")[0]
    declaring = [
        (fn, rule) for fn in functions for rule in fn.flow.concurrency if rule.scope == scope
    ]
    first = declaring[0][1] if declaring else None
    return None, sorted({fn.function_id for fn, _ in declaring}), first


def _limited(rules: FlowRules) -> bool:
    return bool(rules.concurrency) or rules.throttle is not None or rules.rate_limit is not None


async def listing(engine: Engine) -> dict[str, Any]:
    """The queue by function and by concurrency key."""
    now = engine.clock.now()
    lease = engine.settings.lease_seconds

    def work(tx: Tx) -> tuple[dict[str, FunctionLoad], dict[str, int], dict[str, int]]:
        live = tx.live
        return live.function_load(now, lease), live.held_slots(now), live.parked_calls()

    load, held, parked = await engine.store.read(work)
    registered = list(engine.registry)
    waiting_by_fn: dict[str, int] = {}
    keys: list[dict[str, Any]] = []
    for key in sorted(set(held) | set(parked)):
        fn, declaring, rule = owner(key, registered)
        if fn is not None:
            waiting_by_fn[fn.function_id] = waiting_by_fn.get(fn.function_id, 0) + parked.get(
                key, 0
            )
        keys.append(
            {
                "key": key,
                "function_id": None if fn is None else fn.function_id,
                "functions": declaring,
                "scope": "fn" if fn is not None else key.partition(":")[0],
                "limit": None if rule is None else rule.limit,
                "in_flight": held.get(key, 0),
                "waiting": parked.get(key, 0),
            }
        )
    functions: list[dict[str, Any]] = []
    for fn in sorted(registered, key=lambda f: f.function_id):
        counts = load.get(fn.function_id, FunctionLoad())
        if not _limited(fn.flow) and counts == FunctionLoad():
            continue
        functions.append(
            {
                "function_id": fn.function_id,
                "app_id": fn.app_id,
                "name": fn.name,
                "queued": counts.queued,
                "running": counts.running,
                "throttled": counts.throttled,
                "in_flight": counts.in_flight,
                "waiting": waiting_by_fn.get(fn.function_id, 0),
                "limits": limits(fn.flow),
            }
        )
    return {
        "data": {"functions": functions, "keys": keys},
        "metadata": {"now": views.timestamp(now)},
    }
