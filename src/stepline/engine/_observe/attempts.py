"""Every attempt of a step: which ones a call's answer failed, and a step's whole history.

The ``steps`` row keeps a step's attempt count and last error; ``step_attempts``
(``_store.attempts``) keeps each failed attempt. ``record`` runs in the transaction
that applied a call's answer, after the run transitions did: it writes one row per attempt the
answer failed (a step's ``StepError`` or ``StepFailed``, or the whole call failing) and
nothing at all for an answer that failed nothing, so the step hot path pays nothing.
``history`` puts a step's attempts together for the API: the failed ones as recorded,
then the one that succeeded, read from the step row. Both are pure but for ``record``'s
two statements.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stepline._protocol.opcodes import Opcode
from stepline.engine._model import Job, Run, StepRecord, StepStatus
from stepline.engine._store.attempts import StepAttempt
from stepline.engine._wire.response import Failed, Ops, Outcome

if TYPE_CHECKING:
    from stepline.engine._runs.view import RunView
    from stepline.engine._store import Tx

logger = logging.getLogger("stepline.engine")
#: the step id under which a call that failed outside any step (a discovery call) is kept
CALL = "step"
_FAILED_OPS = (Opcode.STEP_ERROR, Opcode.STEP_FAILED)


def failed(
    run_id: str, job: Job, outcome: Outcome, now: float, started: float | None
) -> list[StepAttempt]:
    """The attempts a call's answer failed (before knowing whether they are retried).

    Args:
        run_id: the call's run.
        job: the call as it was leased (``attempt``: how many tries failed before it).
        outcome: what the app answered.
        now: when the answer was recorded.
        started: when the call began (None: not known).
    """
    number = job.attempt + 1
    if isinstance(outcome, Failed):
        failing = outcome.steps[-1].id if outcome.steps else job.step_id or CALL
        return [StepAttempt(run_id, failing, number, started, now, outcome.error)]
    if isinstance(outcome, Ops):
        return [
            StepAttempt(run_id, op.id, number, started, now, op.error or {})
            for op in outcome.ops
            if op.op in _FAILED_OPS
        ]
    return []


def record(
    tx: Tx,
    view: RunView | None,
    job: Job,
    outcome: Outcome,
    now: float,
    *,
    lease: float = 0.0,
    started: float | None = None,
) -> None:
    """Record the attempts an applied answer failed, with when each is retried.

    Args:
        tx: the transaction that applied the answer (``RunTransitions.apply``).
        view: what ``apply`` returned (None: the answer was not applied).
        job: the call as leased; its ``lease_expires`` is the lease time plus ``lease``.
        outcome: the applied answer.
        now: when it was applied.
        lease: the length of the lease the call was made under (the worker's calls).
        started: when the call began, if known otherwise (else derived from ``lease``).
    """
    if view is None or not isinstance(outcome, Failed | Ops):
        return
    if started is None and lease and job.lease_expires is not None:
        started = job.lease_expires - lease  # the in-memory job: heartbeats move the row only
    attempts = failed(view.run.run_id, job, outcome, now, started)
    if isinstance(outcome, Failed) and _step_ended_it(view, attempts, outcome):
        return  # listed once, under the step
    if not attempts:
        return
    again = tx.queue.get_job(job.job_id)  # retried: the same call, due again with one more attempt
    retry_at = again.available_at if again is not None and again.attempt > job.attempt else None
    for attempt in attempts:
        step = view.steps.get(attempt.step_id)
        ended = view.run.status.terminal or (step is not None and step.status.ended)
        tx.attempts.put_attempt(
            StepAttempt(
                attempt.run_id,
                attempt.step_id,
                attempt.attempt,
                attempt.started_at,
                attempt.ended_at,
                attempt.error,
                None if ended else retry_at,
            )
        )


def _step_ended_it(view: RunView, attempts: list[StepAttempt], outcome: Failed) -> bool:
    """Whether a failed call outside any step only raised again the ``NonRetriableError``
    a step of the run failed with for good.

    A ``NonRetriableError`` raised in a step ends the function, not just the step: when
    the SDK reported the step failed beside the steps done before it in the same call
    (checkpointing), the next call raises it again outside any step. That call's failure
    is the step's, already listed under it.
    """
    error = outcome.error
    if [a.step_id for a in attempts] != [CALL] or error.get("name") != _NON_RETRIABLE:
        return False
    return any(
        step.status is StepStatus.FAILED
        and step.error is not None
        and step.error.get("name") == _NON_RETRIABLE
        and step.error.get("message") == error.get("message")
        for step in view.steps.values()
    )


#: The error name a ``NonRetriableError`` (Stepline's and inngest-py's) fails with.
_NON_RETRIABLE = "NonRetriableError"


def history(
    steps: Sequence[StepRecord], recorded: Sequence[StepAttempt]
) -> dict[str, list[StepAttempt]]:
    """Every attempt of each step that failed at least once, oldest first, by step id.

    The failed attempts are the recorded ones; a step that then succeeded gets its last
    attempt from its own row (started when the previous one said it would be retried,
    ended when the step did). Steps that never failed are left out, and attempts of a
    call outside any step stay under ``CALL``.
    """
    found: dict[str, list[StepAttempt]] = {}
    for attempt in recorded:
        found.setdefault(attempt.step_id, []).append(attempt)
    for tries in found.values():
        tries.sort(key=lambda a: a.attempt)
    for step in steps:
        tries = found.get(step.step_id, [])
        if tries and step.status is StepStatus.COMPLETED:
            last = tries[-1]
            started = last.retry_at if last.retry_at is not None else last.ended_at
            tries.append(
                StepAttempt(step.run_id, step.step_id, last.attempt + 1, started, step.ended_at)
            )
    return found


def logged(run: Run, job: Job, outcome: Outcome) -> None:
    """A failed attempt's log line (nothing for the others)."""
    if isinstance(outcome, Failed):
        message = outcome.error.get("message")
        args = (run.run_id, run.function_id, job.step_id, job.attempt, message)
        logger.warning("run %s (%s) call %s attempt %d failed: %s", *args)
