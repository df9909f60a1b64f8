"""Replay a run: a new run of the same function and trigger events, linked to the original.

Replayed from a step, the new run starts with the original's steps that completed
*before* that step (in the order they completed: their ``seq``), memos and all, so the
SDK replays them from memory and runs the chosen step and everything after it again. The
original is left as it was. The new run's ``origin`` links it: ``replay:<run id>`` for a
plain replay, ``replay:<run id>:<hashed step id>:<step name>`` from a step (``link`` reads
it back; origins written without the name are read too).

Only an ended run is replayed: a live one's history still grows, and running its steps
twice at once would double their side effects (cancel it first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline._protocol.hashing import hash_step_id
from stepline.engine import _ids
from stepline.engine._apps.registry import FunctionSpec
from stepline.engine._errors import NotFoundError
from stepline.engine._model import Run, StepRecord, stack_of
from stepline.engine._runs import starts as _starts
from stepline.engine._store import Tx

PREFIX = "replay:"


class LiveRunError(RuntimeError):
    """The run has not ended yet (the API answers 409)."""


def chosen(steps: Sequence[StepRecord], from_step: str) -> StepRecord:
    """The step ``from_step`` names: its hashed id, its id as written (``"charge"``, or
    ``"charge:1"`` for its second use), or its name (the first step with it).

    Raises:
        NotFoundError: no step of the run matches.
    """
    by_id = {s.step_id: s for s in steps}
    found = by_id.get(from_step) or by_id.get(hash_step_id(from_step))
    found = found or next((s for s in steps if s.name == from_step), None)
    if found is None:
        raise NotFoundError(f"the run has no step {from_step!r}")
    return found


def kept(steps: Sequence[StepRecord], step: StepRecord) -> list[StepRecord]:
    """The done steps recorded before ``step`` in completion order (``stack_of``; pure).

    A step that never completed (still planned when the run ended) keeps every step
    that completed before it started.
    """
    by_id = {s.step_id: s for s in steps if s.status.done}
    stack = stack_of(steps)
    if step.step_id in stack:
        before = stack[: stack.index(step.step_id)]
    else:
        started = step.started_at if step.started_at is not None else float("inf")
        before = [i for i in stack if i in by_id and (by_id[i].ended_at or 0.0) <= started]
    return [by_id[i] for i in before if i in by_id]


def start(
    tx: Tx,
    fn: FunctionSpec,
    original: Run,
    now: float,
    *,
    steps: Sequence[StepRecord] = (),
    from_step: StepRecord | None = None,
) -> str:
    """Start the replay of ``original`` in ``tx`` with ``steps`` recorded; its run id."""
    events = [e for e in map(tx.get_event, original.event_ids) if e is not None]
    origin = PREFIX + original.run_id
    if from_step is not None:  # the hashed id links the step; its name is what people read
        origin += f":{from_step.step_id}:{from_step.name}"
    new = _starts.start_run(tx, fn, events, now, run_id=_ids.ulid(int(now * 1000)), origin=origin)
    assert new is not None  # a fresh ULID
    # the copies' ``seq`` is the new run's completion order: 0, 1, 2... as ``steps`` go
    for seq, step in enumerate(steps):
        tx.put_step(dataclasses.replace(step, run_id=new.run_id, seq=seq))
    new.request_version = original.request_version
    new.started_by = original.started_by  # a replay stays its starter's run
    tx.update_run(new)
    return new.run_id


def replay(tx: Tx, fn: FunctionSpec | None, run_id: str, from_step: str | None, now: float) -> str:
    """Replay an ended run (from a step, when given); the new run's id.

    Raises:
        NotFoundError: no such run or step, or its function is no longer registered.
        LiveRunError: the run has not ended.
    """
    run = tx.get_run(run_id)
    if run is None:
        raise NotFoundError(f"run {run_id!r} not found")
    if not run.status.terminal:
        raise LiveRunError(
            f"run {run_id} is still {run.status.value}: replay it once it has ended "
            "(or cancel it first)"
        )
    if fn is None:
        raise NotFoundError(f"function {run.function_id!r} is no longer registered")
    if from_step is None:
        return start(tx, fn, run, now)
    steps = tx.get_steps(run_id)
    step = chosen(steps, from_step)
    return start(tx, fn, run, now, steps=kept(steps, step), from_step=step)


def link(origin: str | None) -> dict[str, str | None]:
    """What a run's ``origin`` says it replays: ``replay_of``, ``replay_from_step`` (the
    step's hashed id) and ``replay_from_step_name`` (its name, as written: ``"charge"``)."""
    if origin is None or not origin.startswith(PREFIX):
        return {"replay_of": None, "replay_from_step": None, "replay_from_step_name": None}
    run_id, _, step = origin[len(PREFIX) :].partition(":")
    step_id, _, name = step.partition(":")  # a hashed id holds no colon; a name may
    return {
        "replay_of": run_id,
        "replay_from_step": step_id or None,
        "replay_from_step_name": name or None,
    }
