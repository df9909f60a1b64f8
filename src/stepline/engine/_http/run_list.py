"""The runs list's extras: search by run id, and what each live run waits on.

``GET /v1/runs?run_id=01HX`` lists the runs whose id starts with that text (a whole id
finds its run), through a range of the primary key. Every run of a page has the
``waiting`` of ``views.run``: flow control and pauses hold a run back at the run level
(``throttled``, ``concurrency``, ``debounced``, ``batched``, ``priority``, ``paused``); a
Running run that nothing holds there may still wait in a step, which this module reads
for the whole page in one query: ``sleeping``, ``waiting_for_event``,
``waiting_for_signal`` or ``waiting_for_invoke``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepline.engine._engine import Engine
from stepline.engine._http import views
from stepline.engine._http.wire import ApiError
from stepline.engine._model import StepStatus
from stepline.engine._store import RunFilter
from stepline.engine._store.browsing import WaitingStep

#: run ids are ULIDs: 26 characters of Crockford's base32
RUN_ID_LENGTH = 26
_CROCKFORD = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
#: what a waiting step's ``wait`` says, copied into the run's ``waiting``
_DETAILS = ("event", "if", "signal", "function_id", "until")


def run_id_prefix(text: str | None) -> str | None:
    """``?run_id=``: a run id or its beginning, any case; None when absent.

    Raises:
        ApiError: not up to 26 characters of Crockford base32 (400).
    """
    if text is None or not text.strip():
        return None
    value = text.strip().upper()
    if len(value) > RUN_ID_LENGTH or not set(value) <= _CROCKFORD:
        raise ApiError(
            400,
            f"run_id: want a run id or its beginning (up to {RUN_ID_LENGTH} characters "
            f"of 0-9 and A-Z without I, L, O, U), got {text!r}",
        )
    return value


def step_waiting(steps: Sequence[WaitingStep]) -> dict[str, Any] | None:
    """A run's ``waiting`` from the steps it waits in (the first one started), or None.

    Pure: ``until`` becomes an RFC 3339 time; ``steps`` counts them when several wait.
    """
    if not steps:
        return None
    first = steps[0]
    wait = first.wait or {}
    if first.status == StepStatus.SLEEPING.value:
        reason = "sleeping"
    elif first.status == StepStatus.INVOKING.value:
        reason = "waiting_for_invoke"
    elif "signal" in wait:
        reason = "waiting_for_signal"
    else:
        reason = "waiting_for_event"
    view: dict[str, Any] = {"reason": reason, "step": first.name}
    for name in _DETAILS:
        value = wait.get(name)
        if name == "until":  # epoch seconds in the store; 0 when the wait set none
            if isinstance(value, int | float) and value > 0:
                view[name] = views.timestamp(float(value))
        elif value is not None:
            view[name] = value
    if len(steps) > 1:
        view["steps"] = len(steps)
    return view


async def page(engine: Engine, where: RunFilter, limit: int) -> dict[str, Any]:
    """A page of runs (``where.limit`` is ``limit + 1``), live runs with their sub-state."""
    found = await engine.list_runs(where)
    body = views.page(found, limit, views.run, lambda r: r.run_id)
    await add_waiting(engine, body)
    return body


async def add_waiting(engine: Engine, body: dict[str, Any]) -> None:
    """Give each live run of a page's ``data`` that nothing holds back its step's wait."""
    live = [v for v in body["data"] if v["status"] == "Running" and v["waiting"] is None]
    if live:
        ids = [v["run_id"] for v in live]
        steps = await engine.store.read(lambda tx: tx.browsing.waiting_steps(ids))
        by_run: dict[str, list[WaitingStep]] = {}
        for step in steps:
            by_run.setdefault(step.run_id, []).append(step)
        for view in live:
            view["waiting"] = step_waiting(by_run.get(view["run_id"], []))
