"""A run's history: every transition its records hold, in the order they happened.

What ``GET /v1/runs/{id}/history`` answers and the run page's history view shows. The
store keeps a run's state, not a log of its changes: the run (queued, started, held back,
ended, its notices), each step (started, and how it ended) and each attempt of a step that
failed once (when its call was leased, its error, when it was retried). Each of those times is one
transition here, so the history is as complete as what was recorded and no more (a lease
that expired without an answer leaves nothing behind). Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from stepline._api import step_state
from stepline._json import loads as json_loads
from stepline._protocol import execution
from stepline.engine._model import Run, StepRecord, StepStatus
from stepline.engine._store.attempts import StepAttempt

__all__ = ["Transition", "history_of"]

#: a step's end: after its start and every attempt it made
_LAST = 1 << 30
#: the pseudo step id of the calls that failed outside any step (``views.attempt``)
_CALL = "step"


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One recorded change of a run or of one of its steps.

    Attributes:
        at: when (epoch seconds).
        type: what happened (``queued``, ``started``, ``step_completed``, ``slept``...).
        step_id: the step it concerns (None: the run itself).
        step_name: that step's name.
        detail: what else was recorded with it (an output, an error, a deadline...).
    """

    at: float
    type: str
    step_id: str | None = None
    step_name: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


def history_of(
    run: Run, steps: Sequence[StepRecord], attempts: Sequence[StepAttempt]
) -> list[Transition]:
    """The transitions ``run``, its ``steps`` and their ``attempts`` record, oldest first.

    Transitions recorded in the same instant (one answer of the function reports several
    steps) keep the order in which they happened: the run's start before its steps, the
    steps in the order the run recorded them (``steps`` is in completion order), a step's
    start before its attempts (each leased, then failed) and its end, the run's end last.
    Only the attempts of steps that failed once are recorded (``step_attempts``): a step
    that succeeded first time has no lease of its own.
    """
    found: list[tuple[tuple[float, int, int, int], Transition]] = []

    def add(transition: Transition, phase: int, place: int = 0, within: int = 0) -> None:
        found.append(((transition.at, phase, place, within), transition))

    add(Transition(run.created_at, "queued", detail=_queued(run)), 0)
    if run.waiting:
        since = run.waiting.get("since")
        at = since if isinstance(since, int | float) else run.created_at
        add(Transition(float(at), "held_back", detail=dict(run.waiting)), 0, 1)
    if run.started_at is not None:
        add(Transition(run.started_at, "started"), 0, 2)
    place = {s.step_id: n for n, s in enumerate(steps)}
    names = {s.step_id: s.name for s in steps}
    for a in attempts:
        where = place.get(a.step_id, -1)
        if a.started_at is not None:  # when the call making it was leased
            step_id = None if a.step_id == _CALL else a.step_id
            leased = Transition(a.started_at, "leased", step_id, names.get(a.step_id))
            add(dataclasses.replace(leased, detail={"attempt": a.attempt}), 1, where, 2 * a.attempt)
        failed = _failed(a, names.get(a.step_id))
        if failed is not None:
            add(failed, 1, where, 2 * a.attempt + 1)
    for s in steps:
        for transition, within in _step(s):
            add(transition, 1, place[s.step_id], within)
    for notice in run.notices:
        noticed = notice.get("at")
        if isinstance(noticed, int | float):
            kind = str(notice.get("kind") or "notice")
            add(
                Transition(float(noticed), "notice", detail={**notice, "kind": kind}), 1, len(steps)
            )
    if run.ended_at is not None and run.status.terminal:
        add(Transition(run.ended_at, _ENDED.get(run.status.value, "ended"), detail=_end(run)), 2)
    found.sort(key=lambda item: item[0])
    return [t for _, t in found]


def _queued(run: Run) -> dict[str, Any]:
    detail: dict[str, Any] = {"event_ids": list(run.event_ids)}
    if run.origin:
        detail["origin"] = run.origin
    if run.parent_run_id:
        detail["parent_run_id"] = run.parent_run_id
    return detail


_ENDED = {"Completed": "completed", "Failed": "failed", "Cancelled": "cancelled"}


def _end(run: Run) -> dict[str, Any]:
    detail: dict[str, Any] = {"status": run.status.value}
    if run.cancel_reason:
        detail["reason"] = run.cancel_reason
    if run.output is not None:
        detail["output"] = _stored(run.output)
    return detail


def _stored(text: str) -> Any:
    try:
        return json_loads(text)
    except ValueError:
        return text  # not JSON (an SDK answered with plain text): as it came


def _failed(a: StepAttempt, name: str | None) -> Transition | None:
    """A failed attempt (the one that succeeded is its step's end), None for that one."""
    if a.error is None:
        return None
    step_id = None if a.step_id == _CALL else a.step_id
    at = a.ended_at if a.ended_at is not None else (a.started_at or 0.0)
    detail: dict[str, Any] = {"attempt": a.attempt, "error": a.error}
    if a.retry_at is not None:
        detail["retry_at"] = a.retry_at
    kind = "call_failed" if step_id is None else "attempt_failed"
    return Transition(at, kind, step_id, name, detail)


#: a step's kind -> (its start, its end) transition types
_KINDS = {
    "Sleep": ("sleep_started", "slept"),
    "WaitForEvent": ("waiting_for_event", "resumed"),
    "WaitForSignal": ("waiting_for_signal", "signal_received"),
    "InvokeFunction": ("invoked", "invoke_returned"),
}


def _step(s: StepRecord) -> list[tuple[Transition, int]]:
    """A step's start and end, each with its place among the step's own transitions
    (its failed attempts are numbered from 1 between them)."""
    kind = step_state.kind(s.op)
    began, ended = _KINDS.get(kind, ("step_started", "step_completed"))
    wait = dict(s.wait or {})
    out: list[tuple[Transition, int]] = []
    # a step.run recorded in the same instant it was reported has no start of its own
    if s.started_at is not None and (s.ended_at is None or s.ended_at > s.started_at or wait):
        detail: dict[str, Any] = {"op": kind}
        if s.mode != "wait":
            detail["mode"] = s.mode
        detail.update(wait)
        out.append((Transition(s.started_at, began, s.step_id, s.name, detail), 0))
    if s.ended_at is None or not s.status.ended:
        return out
    output, error = execution.unwrap_memo(s.memo)
    error = error or (None if s.status.done else s.error)
    if s.status is StepStatus.CANCELLED:
        out.append((Transition(s.ended_at, "step_cancelled", s.step_id, s.name), _LAST))
    elif error is not None:
        end = {"op": kind, "attempts": s.attempts, "error": error}
        out.append((Transition(s.ended_at, "step_failed", s.step_id, s.name, end), _LAST))
    else:
        if kind == "WaitForEvent" and output is None:
            ended = "wait_timed_out"
        end = {"op": kind, "attempts": s.attempts, "output": output}
        out.append((Transition(s.ended_at, ended, s.step_id, s.name, end), _LAST))
    return out
