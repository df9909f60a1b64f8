"""What one write transaction did to runs and steps, noted for the engine's observer.

The observer (``_observe.observer.ObservedStore``) gives each write transaction a fresh
``Seen`` (``Tx.seen``); the transaction notes into it as it reads and writes runs and
steps, and once it has committed (never for one that rolled back or was retried) the
observer counts and traces what it holds. Noting is a few dict and list operations in
the transaction's own methods: no proxy stands between the engine and its ``Tx``, so an
observed step pays no forwarding on each of its store calls. A transaction nobody
observes holds None and pays one check per run or step written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepline.engine._model import Run, StepRecord

__all__ = ["Seen"]


class Seen:
    """What one write transaction did to runs and steps (fresh for each attempt).

    Attributes:
        started: the runs it created.
        finished: the runs it ended, once each.
        holds: why flow control held runs back (their ``waiting``).
        steps: ``(run id, step)`` for each step result new in this transaction.
        runs: each run it read or wrote, as last written.
        stack: run id -> its done steps when the transaction first loaded them
            (``RunView``: ``counted``), or 0 for a run it created.
        notices: run id -> its notices when the transaction first read it.
    """

    __slots__ = ("finished", "holds", "notices", "runs", "stack", "started", "stepped", "steps")

    def __init__(self) -> None:
        self.started: list[Run] = []
        self.finished: list[Run] = []
        self.holds: list[Mapping[str, Any]] = []
        self.steps: list[tuple[str, StepRecord]] = []
        self.runs: dict[str, Run] = {}
        self.stack: dict[str, int] = {}
        self.stepped: set[tuple[str, str]] = set()
        self.notices: dict[str, int] = {}

    def read(self, run: Run) -> None:
        """The transaction read ``run`` (the first read fixes what it had before)."""
        if run.run_id not in self.runs:
            self.notices[run.run_id] = len(run.notices)
            self.runs[run.run_id] = run

    def counted(self, run_id: str, done: int) -> None:
        """The transaction learnt how many of the run's steps are done (the first count
        stands): a step written with a ``seq`` from there on is a new result."""
        self.stack.setdefault(run_id, done)

    def inserted(self, run: Run) -> None:
        """The transaction created ``run``."""
        self.started.append(run)
        self.runs[run.run_id] = run
        self.stack.setdefault(run.run_id, 0)

    def updated(self, run: Run) -> None:
        """The transaction wrote ``run`` back (ended, perhaps)."""
        self.runs[run.run_id] = run
        if run.status.terminal and all(r.run_id != run.run_id for r in self.finished):
            self.finished.append(run)

    def wrote(self, step: StepRecord) -> None:
        """The transaction wrote ``step``: a result new since it read the run is kept."""
        base = self.stack.get(step.run_id)
        key = (step.run_id, step.step_id)
        if (
            base is not None
            and step.status.done
            and step.seq is not None
            and step.seq >= base
            and key not in self.stepped
        ):
            self.stepped.add(key)
            self.steps.append((step.run_id, step))

    def held(self, waiting: Mapping[str, Any] | None) -> None:
        """The transaction set a run's ``waiting`` (flow control held it back)."""
        if waiting:
            self.holds.append(waiting)
