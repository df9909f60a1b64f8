"""A run and its steps as one transaction sees them, and the timing rules of ops."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from stepline._protocol import durations
from stepline.engine._model import Run, StepRecord, StepStatus
from stepline.engine._response import Divergence, Ops, Outcome, ReportedOp
from stepline.engine._store import Tx

#: Sleeps, waits and invokes longer than this are cut to it (the Go server rejects them).
YEAR = 365 * 86_400.0
#: Notices kept per run: a run whose replays keep diverging differently stops adding more.
MAX_NOTICES = 50
#: Step ids one notice lists per kind (missing, reordered, new).
MAX_NOTICE_IDS = 200

logger = logging.getLogger("stepline.engine")


@dataclasses.dataclass(slots=True)
class RunView:
    """A run and its steps, loaded once per transaction and written back by ``save``.

    ``loaded`` keeps a shallow copy of each step as read: ``save`` writes only the steps
    that changed (step fields are replaced, never mutated in place), so recording one
    step's result costs one row, not one per step the run has.
    """

    run: Run
    steps: dict[str, StepRecord]
    loaded: dict[str, StepRecord] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, tx: Tx, run_id: str | None) -> RunView | None:
        """The run with its steps, or None if there is no such run."""
        run = None if run_id is None else tx.get_run(run_id)
        if run is None:
            return None
        steps = {s.step_id: s for s in tx.get_steps(run.run_id)}
        return cls(run, steps, {i: copy.copy(s) for i, s in steps.items()})

    def save(self, tx: Tx) -> None:
        """Write the run and every step that changed back."""
        tx.update_run(self.run)
        for step_id, step in self.steps.items():
            if self.loaded.get(step_id) != step:
                tx.put_step(step)

    def pending(self) -> list[StepRecord]:
        """Steps still planned, sleeping, waiting or calling."""
        return [s for s in self.steps.values() if not s.status.ended]

    def end_pending(self, now: float) -> None:
        """The run ended: its steps still sleeping, waiting or calling end with it.

        They become ``Cancelled`` (no memo: the SDK never sees them), so no view of an
        ended run shows a step "Sleeping" forever.
        """
        for step in self.pending():
            step.status = StepStatus.CANCELLED
            step.ended_at = now

    def fail_step(self, step_id: str | None, error: Any, now: float) -> None:
        """A call that targeted ``step_id`` failed the run: that step failed, not cancelled."""
        step = self.steps.get(step_id) if step_id else None
        if step is not None and not step.status.ended:
            step.status, step.error, step.ended_at = StepStatus.FAILED, error, now
            step.attempts += 1

    def step(self, op: ReportedOp, status: StepStatus, now: float) -> StepRecord:
        """The step an op refers to, created with ``status`` if it is new."""
        step = self.steps.get(op.id)
        if step is None:
            step = StepRecord(
                run_id=self.run.run_id,
                step_id=op.id,
                name=op.display_name,
                op=op.op.value,
                status=status,
                mode=op.parallel_mode,
                started_at=now,
            )
            self.steps[op.id] = step
        return step

    def done(self, op: ReportedOp, memo: Any, status: StepStatus, now: float) -> StepRecord:
        """Record a step's result once; a re-delivered result changes nothing."""
        step = self.step(op, StepStatus.PLANNED, now)
        if step.status.done:
            return step
        step.status = status
        step.op = op.op.value
        step.memo = memo
        step.attempts += 1
        step.ended_at = now
        step.error = op.error
        self.append(step)
        return step

    def diverged(
        self, divergence: Divergence, outcome: Outcome, now: float
    ) -> dict[str, Any] | None:
        """Record that a replay no longer matched the run's history; the notice if new.

        Every later replay of the run reports the same divergence again: it is recorded
        once (same missing and reordered ids), and new step ids reported later are merged
        into it. Step names come from the run's steps, and for new steps from the ops of
        this answer. A new notice is logged (WARNING) naming the run, function and steps.
        """
        ops = outcome.ops if isinstance(outcome, Ops) else ()
        names = {s.step_id: s.name for s in self.steps.values()}
        names.update({op.id: op.display_name for op in ops})
        key = (set(divergence.missing), set(divergence.reordered))
        for notice in self.run.notices:
            if notice.get("kind") == "nondeterminism" and _key(notice) == key:
                known = {entry.get("id") for entry in notice.get("new", [])}
                added = [i for i in divergence.new if i not in known]
                room = MAX_NOTICE_IDS - len(known)
                if added and room > 0:
                    notice["new"] = [*notice.get("new", []), *_named(added[:room], names)]
                    notice["message"] = divergence_message(notice)
                return None
        if len(self.run.notices) >= MAX_NOTICES:
            return None
        notice = {
            "kind": "nondeterminism",
            "source": divergence.source,
            "policy": divergence.policy,
            "at": now,
            "missing": _named(divergence.missing, names),
            "reordered": _named(divergence.reordered, names),
            "new": _named(divergence.new, names),
            "version": self.run.app_version,
        }
        notice["message"] = divergence_message(notice)
        self.run.notices.append(notice)
        logger.warning("run %s (%s): %s", self.run.run_id, self.run.function_id, notice["message"])
        return notice

    def append(self, step: StepRecord) -> None:
        """Put a finished step at the end of the run's completion order."""
        step.seq = len(self.run.stack)
        self.run.stack.append(step.step_id)


def divergence_message(notice: dict[str, Any]) -> str:
    """One human line for a non-determinism notice, naming the steps involved."""
    parts = []
    for field, what in (
        ("missing", "no longer reached"),
        ("reordered", "reached in another order"),
        ("new", "not in the history"),
    ):
        entries = notice.get(field) or []
        if entries:
            labels = ", ".join(repr(e.get("name") or e.get("id")) for e in entries[:10])
            more = f" and {len(entries) - 10} more" if len(entries) > 10 else ""
            parts.append(f"{what}: {labels}{more}")
    outcome = "the run failed" if notice.get("policy") == "fail" else "the run went on"
    return (
        f"the replay did not match the recorded history ({'; '.join(parts)}); "
        f"{outcome} (policy {notice.get('policy')})"
    )


def _key(notice: dict[str, Any]) -> tuple[set[Any], set[Any]]:
    missing = {e.get("id") for e in notice.get("missing", []) if isinstance(e, dict)}
    reordered = {e.get("id") for e in notice.get("reordered", []) if isinstance(e, dict)}
    return missing, reordered


def _named(ids: Iterable[str], names: dict[str, str]) -> list[dict[str, Any]]:
    return [{"id": i, "name": names.get(i)} for i in ids]


def sleep_until(op: ReportedOp, now: float) -> float:
    """When a Sleep op ends: ``opts.duration`` (spec), else ``name`` as a time (py)."""
    duration = op.opts.get("duration")
    return deadline([duration, op.name], now, default=0.0)


def deadline(values: list[object], now: float, *, default: float) -> float:
    """The first of ``values`` that reads as a time or a duration (capped at a year).

    Like the Go server, a string of 10 or more characters is tried as a time first.
    """
    for text in values:
        if not isinstance(text, str) or not text:
            continue
        if len(text) >= 10:
            try:
                return durations.parse_timestamp(text).timestamp()
            except ValueError:
                pass
        try:
            return now + min(durations.parse_duration(text).total_seconds(), YEAR)
        except ValueError:
            continue
    return now + default
