"""Where a step is recorded: what a call reports, applied to its run in one transaction.

Every path that records what an app's call reported comes here, inside the transaction
it commits: the worker (``_worker/worker.py``, also for the calls it makes on the SDK's
thread, ``_worker/onthread.py``), durable endpoints' inline runs
(``_endpoints/inline.py``) and per-step checkpoints, in process and over HTTP
(``_driver/local.py``). Two things are recorded:

* **an answer** (``answer``): the call is over. ``RunTransitions.apply`` records its
  steps in the run's view and saves it, and decides what follows (the next call, a
  retry, a sleep, a wait, the run's end); the attempts the answer failed are recorded
  with it (``_observe.attempts``).
* with either, what model-request steps used (``tokens``: usage rows, budget charges).
* **a checkpoint** (``checkpoint``): steps a call ran and committed before answering,
  while it goes on; only those steps (and the run's end, if one completes it) are
  written.

What a path does around it stays its own: checking the caller still holds the call's
lease, leasing the run's next call in the same transaction (the worker's run affinity),
and telling who waits once it has committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stepline.engine._model import Job
from stepline.engine._observe import attempts as _attempts
from stepline.engine._runs import tokens as _tokens
from stepline.engine._store import Tx
from stepline.engine._wire.response import Failed, Outcome, ReportedOp

if TYPE_CHECKING:
    from stepline.engine._runs.transitions import RunTransitions
    from stepline.engine._runs.view import KnownSteps, RunView

__all__ = ["answer", "checkpoint"]


def answer(
    tx: Tx,
    transitions: RunTransitions,
    job: Job,
    outcome: Outcome,
    *,
    now: float,
    owner: str,
    known: KnownSteps | None = None,
    lease: float = 0.0,
    first: bool = False,
    locked: bool = False,
) -> RunView | None:
    """Record a call's answer: its steps, what follows them, and the attempts it failed.

    Args:
        tx: the transaction that records it.
        transitions: the engine's run transitions.
        job: the call as it was leased.
        outcome: the decoded answer.
        now: when it is recorded.
        owner: the lease's owner: an answer whose lease was taken over records nothing.
        known: the run's steps as stored when the call was leased (a read fewer when no
            step was written since).
        lease: the length of the lease the call was made under (the worker's calls:
            when the call began follows from it).
        first: the call is its run's first, begun when the run started (a durable
            endpoint's inline call).
        locked: ``job`` was read in this transaction, locked, as ``RunTransitions.apply``
            reads it (a keyed call's job alone, any other with its run): not read again.

    Returns:
        The run's view as recorded, or None when the answer no longer matters (the
        lease was lost, the run ended meanwhile).
    """
    view = transitions.apply(tx, job, outcome, now, owner, known=known, locked=locked)
    started = view.run.started_at if first and view is not None else None
    _attempts.record(tx, view, job, outcome, now, lease=lease, started=started)
    reported = outcome.steps if isinstance(outcome, Failed) else getattr(outcome, "ops", ())
    if view is not None and (used := _tokens.ai_ops(reported)):
        _tokens.record(tx, view.run.run_id, view.run.function_id, used, now)
    return view


def checkpoint(
    tx: Tx,
    transitions: RunTransitions,
    run_id: str,
    ops: tuple[ReportedOp, ...],
    *,
    job: Job | None,
    now: float,
    known: KnownSteps | None = None,
) -> RunView | None:
    """Record steps a call ran and checkpointed before answering; the call goes on.

    ``job`` is the call's (its retry budget starts again), None when not known.
    ``known``: the run's steps as the caller last saw them stored (none is read when
    no step was written since).

    Returns:
        The run's view as recorded; None when the run had ended: nothing was recorded.

    Raises:
        NotFoundError: there is no run ``run_id``.
    """
    view = transitions.checkpoint(tx, run_id, ops, job, now, known=known)
    if view is not None and (used := _tokens.ai_ops(ops)):
        _tokens.record(tx, run_id, view.run.function_id, used, now)
    return view
