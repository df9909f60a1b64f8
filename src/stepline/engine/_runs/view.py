"""A run and its steps as one transaction sees them, and the timing rules of ops."""

from __future__ import annotations

import dataclasses
import logging
import operator
import re
from collections.abc import Iterable
from typing import Any

from stepline import _identity, _serde
from stepline._protocol import durations
from stepline._protocol.hashing import hash_step_id
from stepline._protocol.opcodes import Opcode
from stepline.engine._model import YEAR, Run, StepRecord, StepStatus, stack_of, storable
from stepline.engine._store import Tx
from stepline.engine._wire.response import (
    MAX_REPORT_ID,
    Completed,
    Failed,
    Ops,
    Outcome,
    RecordedDivergence,
    ReportedOp,
)

INVOKE_TIMEOUT_ERROR = {
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
    "error": "InngestInvokeTimeoutError: Timed out waiting for invoked function to complete",
}
#: The error of a planned step the app's code no longer reaches (it ends, memo-less).
NOT_REACHED = {"name": "StepNotFound", "message": "the app's code no longer reaches this step"}
#: Notices kept per run: a run whose replays keep diverging differently stops adding more.
MAX_NOTICES = 50
#: Step ids one notice lists per kind (missing, reordered, new).
MAX_NOTICE_IDS = 200

logger = logging.getLogger("stepline.engine")


@dataclasses.dataclass(frozen=True, slots=True)
class KnownSteps:
    """A run's steps as a transaction stored them, and their revision then
    (``Tx.steps_revision``): the next transaction on the run reads them again only if
    some step was written since. Never mutated: ``RunView.load`` copies them."""

    run_id: str
    revision: int
    steps: tuple[StepRecord, ...]

    def current(self, tx: Tx, run_id: str) -> bool:
        """Whether these are ``run_id``'s steps as ``tx`` sees them: no step written since
        (False until ``tx`` has read the run's row, which carries the revision)."""
        return self.run_id == run_id and self.revision == tx.steps_revision(run_id)


#: a call's run and steps as the transaction that leased it stored them (and, when known,
#: their revision: the call's answer is recorded without reading them again)
Snapshot = tuple[Run | None, list[StepRecord], KnownSteps | None]


@dataclasses.dataclass(slots=True)
class RunView:
    """A run and its steps, loaded once per transaction and written back by ``save``.

    ``loaded`` holds each step as stored (read, or written since), and ``steps`` shares
    those records until one is changed: code that changes a step gets it from ``own``
    (or ``step``), a copy of the view's own, or puts a new record in ``steps``, and
    ``save`` compares and writes only the records that are not the stored ones.
    Recording one step's result copies and compares that step, not every step the run
    has, and writes one row. A record read from ``steps`` is never changed in place.

    The run's completion order is its done steps' ``seq`` (0, 1, 2...): ``done`` counts
    them (``done_steps``), and a step that completes takes the next (``append``). A whole view fills
    ``run.stack`` from its steps; a partial one counts them (``Tx.done_steps``) and leaves
    it empty. Nothing but the step's row is written for the order.
    """

    run: Run
    steps: dict[str, StepRecord]
    loaded: dict[str, StepRecord] = dataclasses.field(default_factory=dict)
    #: every step of the run was loaded (not ``partial``)
    whole: bool = True
    #: ``loaded`` is in stored order (as read, then steps appended after the last)
    ordered: bool = True
    #: a ``waited`` view: whether a step it did not load has not ended
    others_pending: bool = False
    #: how many of the run's steps are done: the ``seq`` the next one to complete takes
    done_steps: int = 0

    @classmethod
    def load(cls, tx: Tx, run_id: str | None, known: KnownSteps | None = None) -> RunView | None:
        """The run with its steps, or None if there is no such run.

        ``known``: the steps as an earlier transaction stored them (``known_steps``),
        taken (copied) instead of read when no step of the run was written since.
        """
        run = None if run_id is None else tx.get_run(run_id)
        if run is None:
            return None
        if known is not None and known.current(tx, run.run_id):
            # shared until owned: the known steps are never changed
            loaded = {s.step_id: s for s in known.steps}
        else:
            loaded = {s.step_id: s for s in tx.get_steps(run.run_id)}
        run.stack = stack_of(loaded.values())
        return cls(run, dict(loaded), loaded, done_steps=_counted(tx, run.run_id, len(run.stack)))

    def known_steps(self, tx: Tx) -> KnownSteps | None:
        """The steps as stored when ``tx`` commits, for a later ``load``; None for a
        ``partial`` view, or a run whose revision ``tx`` does not know."""
        revision = tx.steps_revision(self.run.run_id)
        if revision is None or not self.whole:
            return None
        loaded = self.loaded.values()
        stored = tuple(loaded) if self.ordered else tuple(sorted(loaded, key=_stored_order))
        return KnownSteps(self.run.run_id, revision, stored)

    @classmethod
    def partial(cls, tx: Tx, run_id: str, step_ids: Iterable[str]) -> RunView | None:
        """The run with only the steps ``step_ids`` (those that exist): for recording
        results of steps the run's other steps do not bear on (a checkpoint)."""
        run = tx.get_run(run_id)
        if run is None:
            return None
        steps = {}
        for step_id in step_ids:
            step = tx.get_step(run_id, step_id)
            if step is not None:
                steps[step_id] = step
        done = _counted(tx, run_id, tx.done_steps(run_id))
        return cls(run, dict(steps), steps, whole=False, ordered=False, done_steps=done)

    @classmethod
    def waited(cls, tx: Tx, run_id: str, step_id: str) -> RunView | None:
        """The run with only the step that waited, and whether any other step has not
        ended: what ending a wait reads (``RunTransitions.finish_wait``). A run waiting
        on n invoked children would otherwise read and decode its n steps as each child
        ends: n² over the fan-out."""
        view = cls.partial(tx, run_id, [step_id])
        if view is not None:
            view.others_pending = tx.pending_step(run_id, step_id)
        return view

    def own(self, step_id: str) -> StepRecord | None:
        """The step, a copy of this view's own to change (None if there is none)."""
        step = self.steps.get(step_id)
        if step is not None and step is self.loaded.get(step_id):
            step = self.steps[step_id] = step.copy()
        return step

    def _changed(self) -> list[StepRecord]:
        loaded = self.loaded
        return [s for i, s in self.steps.items() if (was := loaded.get(i)) is not s and was != s]

    def save(self, tx: Tx) -> None:
        """Write the run and every step that changed back (one step: with the run)."""
        changed = self._changed()
        tx.update_run(self.run, changed[0] if len(changed) == 1 else None)
        if len(changed) > 1:
            tx.put_steps(changed)
        self._stored(changed)

    def save_steps(self, tx: Tx) -> None:
        """Write every step that changed back, not the run (when only step results were
        recorded: their ``seq`` is the completion order)."""
        changed = self._changed()
        if len(changed) == 1:
            tx.put_step(changed[0])
        elif changed:
            tx.put_steps(changed)
        self._stored(changed)

    def _stored(self, changed: list[StepRecord]) -> None:
        loaded = self.loaded
        for step in changed:
            if self.ordered and (step.step_id in loaded or _before_last(loaded, step)):
                self.ordered = False
            loaded[step.step_id] = step.copy()  # as stored: the view's own may change on

    def pending(self) -> list[StepRecord]:
        """Steps still planned, sleeping, waiting or calling."""
        return [s for s in self.steps.values() if not s.status.ended]

    def any_pending(self) -> bool:
        """Whether a step is still planned, sleeping, waiting or calling."""
        return self.others_pending or not all(map(_ENDED, self.steps.values()))

    def end_pending(self, now: float) -> None:
        """The run ended: its steps still sleeping, waiting or calling end with it.

        They become ``Cancelled`` (no memo: the SDK never sees them), so no view of an
        ended run shows a step "Sleeping" forever.
        """
        for pending in self.pending():
            step = self.own(pending.step_id)
            assert step is not None
            step.status = StepStatus.CANCELLED
            step.ended_at = now

    def fail_step(self, step_id: str | None, error: Any, now: float) -> None:
        """A call that targeted ``step_id`` failed the run: that step failed, not cancelled."""
        step = self.own(step_id) if step_id else None
        if step is not None and not step.status.ended:
            step.status, step.error, step.ended_at = StepStatus.FAILED, error, now
            step.attempts += 1

    def live(self, step_id: str) -> StepRecord | None:
        """The step, unless there is none or the app no longer reached it (``lost``)."""
        step = self.steps.get(step_id)
        lost = (
            step is not None and step.status is StepStatus.CANCELLED and step.error == NOT_REACHED
        )
        return None if lost else step

    def step(self, op: ReportedOp, status: StepStatus, now: float) -> StepRecord:
        """The step an op refers to (this view's own to change), created with ``status``
        if it is new (or was lost)."""
        step = self.own(op.id)
        if step is not None and self.live(op.id) is None:  # reached again after all
            step.status, step.error, step.started_at, step.ended_at = status, None, now, None
        if step is None:
            step = StepRecord(
                run_id=self.run.run_id,
                step_id=op.id,
                name=op.display_name,
                op=op.op.wire,
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
        step.op = op.op.wire
        step.memo = memo
        step.attempts += 1
        step.ended_at = now
        step.error = op.error
        self.append(step)
        return step

    def result(self, op: ReportedOp, now: float) -> StepRecord:
        """Record the result a ``StepRun``, ``Step`` or ``StepFailed`` op carries."""
        if op.op is Opcode.STEP_FAILED:
            return self.done(op, {"error": op.error}, StepStatus.FAILED, now)
        memo = op.data if op.op is Opcode.STEP else {"data": op.data}
        return self.done(op, memo, StepStatus.COMPLETED, now)

    def diverged(
        self, divergence: RecordedDivergence, outcome: Outcome, now: float
    ) -> dict[str, Any] | None:
        """Record that a replay no longer matched the run's history; the notice if new.

        Every later replay of the run reports the same divergence again: it is recorded
        once (same missing and reordered ids), and new step ids reported later are merged
        into it. Step names come from the run's steps, and for new steps from the ops of
        this answer. A new notice is logged (WARNING) naming the run, function and steps.
        """
        ops = outcome.ops if isinstance(outcome, Ops) else ()
        names: dict[str, str | None] = {s.step_id: s.name for s in self.steps.values()}
        for op in ops:  # a StepNotFound op names the new steps it found instead
            if op.op is Opcode.STEP_NOT_FOUND:
                names.update(_found_steps(op.data))
            else:
                names.setdefault(op.id, op.display_name)
        if isinstance(outcome, Failed):  # an official SDK's failure names what it found
            for step_id in divergence.missing:
                names.update((e["id"], e["name"]) for e in _not_found(outcome, step_id) or ())
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

    def unreached(self, step_id: str | None, outcome: Outcome) -> Outcome:
        """The answer to a call targeting planned step ``step_id``, if the app no longer reaches it.

        Engine-side detection, for SDKs that do not report divergences themselves:
        inngest-py fails such a call with ``StepUnexpectedError`` (it met a step that is
        not in the history first), inngest-js answers 500 naming the ``requestedStep`` and
        the ``foundSteps``, or (per the SDK spec) a ``StepNotFound`` op; the function may
        also return without reaching the step. Each becomes a divergence with source
        ``engine``. A ``StepNotFound`` op ends the step and the run is discovered again,
        as Inngest's executor does. A failed call from an official SDK stays a failure
        (retried, then failing the run with the SDK's error as output), as on Inngest's
        server, and its divergence has policy ``fail``; one from Stepline's SDK becomes a
        ``StepNotFound`` op (policy ``warn``). A step lost once already is retried as
        before (no endless loop). A report of the SDK's own wins.
        """
        step = self.steps.get(step_id or "")
        if step is None or step.status.ended or outcome.divergence is not None:
            return outcome
        if any(step.step_id in _key(n)[0] for n in self.run.notices if n.get("source") == "engine"):
            return outcome  # lost once already: an app this erratic fails as it did before
        missing = (step.step_id,)
        if isinstance(outcome, Completed):
            return dataclasses.replace(
                outcome, divergence=RecordedDivergence("warn", missing, source="engine")
            )
        if isinstance(outcome, Ops):
            lost = [op for op in outcome.ops if op.op is Opcode.STEP_NOT_FOUND and op.id in missing]
            if not lost:
                return outcome
            new = tuple(_found_steps(lost[0].data))
            return dataclasses.replace(
                outcome, divergence=RecordedDivergence("warn", missing, (), new, "engine")
            )
        found = _not_found(outcome, step.step_id)
        if found is None:
            return outcome
        new = tuple(entry["id"] for entry in found)
        if not (outcome.sdk or "").startswith(_OWN_SDK):
            divergence = RecordedDivergence("fail", missing, (), new, "engine")
            return dataclasses.replace(outcome, divergence=divergence)
        op = ReportedOp(
            Opcode.STEP_NOT_FOUND,
            step.step_id,
            step.name,
            step.name,
            {},
            {"foundSteps": found},
            None,
        )
        divergence = RecordedDivergence("warn", missing, (), new, "engine")
        return Ops((op,), outcome.request_version, divergence=divergence)

    def lost(self, op: ReportedOp, now: float) -> bool:
        """A planned step the app no longer reaches (``StepNotFound``) ends without a memo."""
        step = self.steps.get(op.id)
        if step is None or step.status.ended:
            return False
        step = self.own(op.id)
        assert step is not None
        step.status, step.ended_at, step.error = StepStatus.CANCELLED, now, NOT_REACHED
        return True

    def append(self, step: StepRecord) -> None:
        """Put a finished step at the end of the run's completion order."""
        step.seq = self.done_steps
        self.done_steps += 1
        if self.whole:
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


#: How Stepline's SDKs begin their ``X-Inngest-Sdk`` header (``stepline-py:v<version>``).
#: whether a step has ended, read in C (``map``: no Python call per step)
_ENDED = operator.attrgetter("status.ended")
_OWN_SDK = _identity.SDK_HEADER.partition("-")[0] + "-"
_UNEXPECTED = re.compile(r'found step "(.+)" when targeting a different step')


def _not_found(outcome: Failed, step_id: str) -> list[dict[str, Any]] | None:
    """The new steps a failed targeted call names, if it failed for lack of its target.

    inngest-py: ``StepUnexpectedError``, whose message holds the step's own id (its hash
    is the hashed id of that id's first use); inngest-js: a body naming ``requestedStep``.
    """
    if outcome.error.get("name") == "StepUnexpectedError":
        found = _UNEXPECTED.search(str(outcome.error.get("message") or ""))
        name = found.group(1) if found else None
        if name and len(name) <= MAX_REPORT_ID and storable(name):
            return [{"id": hash_step_id(name), "name": name}]
        return []
    try:
        body = _serde.loads(outcome.output)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("requestedStep") != step_id:
        return None
    return [{"id": i, "name": n} for i, n in _found_steps(body).items()]


def _found_steps(data: object) -> dict[str, str | None]:
    """Hashed id to name of the ``foundSteps`` an SDK listed (capped, sane strings only)."""
    listed = data.get("foundSteps") if isinstance(data, dict) else None
    found: dict[str, str | None] = {}
    for entry in listed[:MAX_NOTICE_IDS] if isinstance(listed, list) else ():
        step_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(step_id, str) or not 0 < len(step_id) <= MAX_REPORT_ID:
            continue
        name = entry.get("displayName") or entry.get("name")
        ok = isinstance(name, str) and len(name) <= MAX_REPORT_ID and storable(name)
        if storable(step_id):
            found[step_id] = name if ok else None
    return found


def _key(notice: dict[str, Any]) -> tuple[set[Any], set[Any]]:
    missing = {e.get("id") for e in notice.get("missing", []) if isinstance(e, dict)}
    reordered = {e.get("id") for e in notice.get("reordered", []) if isinstance(e, dict)}
    return missing, reordered


def _named(ids: Iterable[str], names: dict[str, str | None]) -> list[dict[str, Any]]:
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


def _counted(tx: Tx, run_id: str, done: int) -> int:
    """``done``, noted for the transaction's observer: the steps done before it wrote any."""
    if tx.seen is not None:
        tx.seen.counted(run_id, done)
    return done


def _before_last(loaded: dict[str, StepRecord], step: StepRecord) -> bool:
    """Whether ``step`` sorts before the last of ``loaded`` (stored order): appended, it
    would leave them out of order."""
    last = next(reversed(loaded.values()), None)
    return last is not None and _stored_order(step) < _stored_order(last)


def _stored_order(step: StepRecord) -> tuple[bool, int, float]:
    """Steps in the order ``Tx.get_steps`` reads them: by ``seq``, those without last."""
    return step.seq is None, step.seq or 0, step.started_at or 0.0
