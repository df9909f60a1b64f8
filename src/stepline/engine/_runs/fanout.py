"""Fan-out: what one stored event starts, resumes or cancels.

Runs start here through ``_starts`` (plain functions over the ``Tx``); resuming a waiting
run and cancelling one are the run transitions', reached through the small ``Runs`` protocol.
"""

from __future__ import annotations

import json
from typing import Protocol

from stepline import _cel
from stepline.engine import _events
from stepline.engine._apps.registry import FunctionSpec, Registry, compiled, key_of
from stepline.engine._flow import admission
from stepline.engine._model import EventRecord, EventRunLink, Pause, Run
from stepline.engine._runs import starts as _starts
from stepline.engine._store import Tx


class Runs(Protocol):
    """What fan-out needs of the run transitions."""

    @property
    def registry(self) -> Registry:
        """The functions registered now."""
        ...

    def resume(self, tx: Tx, pause: Pause, event: EventRecord, now: float) -> None:
        """An event matched a waiting run's pause: continue (or cancel) that run."""
        ...

    def cancel(self, tx: Tx, run_id: str, now: float, reason: str) -> bool:
        """End a run as cancelled; False if it had already ended."""
        ...


#: How long an event id (or an idempotency key) keeps a second run from starting.
IDEMPOTENCY_WINDOW = 86_400.0


def fanout(runs: Runs, tx: Tx, event: EventRecord, now: float) -> list[str]:
    """Match a stored event against triggers, waits and cancel rules; returns new run ids."""
    registry = runs.registry
    started: list[str] = []
    payload = event.payload
    if event.name == _events.INVOKED:
        meta = payload.get("data", {}).get("_inngest", {})
        fn = registry.get(str(meta.get("fn_id")))
        targets = [] if fn is None else [fn]
    else:
        targets = registry.triggered_by(event.name, payload)
    for fn in targets:
        run = _start_for_event(runs, tx, fn, event, now)
        if run is not None:
            started.append(run.run_id)
    for pause in tx.pauses_for_event(event.name):
        if pause.trigger_event_id == event.internal_id or pause.expires_at < now:
            continue
        if pause.expression is None or compiled(pause.expression).matches(
            {"event": pause.context or {}, "async": payload}
        ):
            runs.resume(tx, pause, event, now)
    if event.name == _events.FINISHED:
        correlation = payload.get("data", {}).get("correlation_id")
        if isinstance(correlation, str):
            for pause in tx.pauses_for_correlation(correlation):
                runs.resume(tx, pause, event, now)
    return started


def _start_for_event(
    runs: Runs, tx: Tx, fn: FunctionSpec, event: EventRecord, now: float
) -> Run | None:
    payload = event.payload
    if payload.get("id") != event.internal_id and not tx.claim_key(
        f"event:{fn.function_id}", str(payload["id"]), now + IDEMPOTENCY_WINDOW, now
    ):
        tx.link_event(
            EventRunLink(event.internal_id, fn.function_id, None, admission.IDEMPOTENT, now)
        )
        return None
    if fn.idempotency is not None:
        try:
            key = json.dumps(fn.idempotency.evaluate({"event": payload}), sort_keys=True)
        except _cel.EvaluationError:
            key = "null"
        if not tx.claim_key(f"idem:{fn.function_id}", key, now + IDEMPOTENCY_WINDOW, now):
            tx.link_event(
                EventRunLink(event.internal_id, fn.function_id, None, admission.IDEMPOTENT, now)
            )
            return None
    reason = admission.skip_reason(runs.cancel, tx, fn, payload, now)
    if reason is not None:
        tx.link_event(EventRunLink(event.internal_id, fn.function_id, None, reason, now))
        return None
    gathered = fn.flow.debounce is not None or admission.matches_batch(fn, payload)
    if gathered and event.name != _events.INVOKED:
        run = admission.gather(tx, fn, event, now)
    else:
        meta = payload.get("data", {}).get("_inngest", {}) if event.name == _events.INVOKED else {}
        correlation = meta.get("correlation_id")
        run = _starts.start_run(
            tx,
            fn,
            [event],
            now,
            correlation_id=correlation if isinstance(correlation, str) else None,
            parent_run_id=meta.get("source_run_id"),
            run_id=meta.get("run_id"),  # proposed by a direct start (the outbox relay)
        )
    single = fn.flow.singleton
    if run is not None and single is not None:
        tx.flow.set_singleton(fn.function_id, key_of(single.key, payload), run.run_id)
    return run
