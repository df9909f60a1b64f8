"""What a send stored, and the first calls of the runs it started, held for after the answer.

The transaction that stores events and starts runs also leases those runs' first calls
for this node's worker (``Worker.adopt``), so a run starts without a trip through the
queue. The event API sends its answer first and only then lets the calls go
(``Intake.start``): a sender always has its ids before its app sees the first call of
a run its events started, as with Inngest's server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from stepline.engine._events import EventError
from stepline.engine._model import Job, Run, StepRecord
from stepline.engine._store import Tx

#: A leased first call and the run and steps it starts from.
Call = tuple[Job, tuple[Run | None, list[StepRecord]]]

#: A send of at most this many events has its runs' first calls taken by this node at once.
ADOPT_MAX_EVENTS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Adopted:
    """The first calls a starting transaction leased for this node's worker (``adopt``)."""

    calls: list[Call]
    #: the transaction queued other jobs as well: the worker's loop must look
    wake: bool
    #: the runs it ended (a singleton start, an event's ``cancelOn`` cancels runs)
    ended: list[Run]


def adopted(tx: Tx, calls: list[Call]) -> Adopted:
    """``calls``, whether ``tx`` queued anything besides them, and the runs it ended."""
    taken = {job.job_id for job, _ in calls}
    wake = any(job_id not in taken for job_id in tx.queued)
    return Adopted(calls, wake=wake, ended=list(tx.ended_runs))


@dataclasses.dataclass(frozen=True, slots=True)
class Intake:
    """The outcome of ``Engine.accept``: stored, committed, first calls not yet sent.

    Attributes:
        ids: internal ids of the stored events, in input order (all of them, or the
            ones before ``error``).
        error: the first invalid event's error, or None; nothing after it was stored.
        start: sends the first calls the transaction leased; call it exactly once,
            after the answer has gone out (a lease left unsent is taken over by the
            queue only when it expires).
    """

    ids: list[str]
    error: EventError | None
    start: Callable[[], None]

    def result(self) -> list[str]:
        """``ids``, or raise ``error`` (carrying them) when an event was invalid."""
        if self.error is not None:
            raise EventError(str(self.error), self.ids)
        return self.ids
