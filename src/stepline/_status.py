"""``RunStatus``: one set of run states for the client, the web kit and the engine."""

from __future__ import annotations

import enum


class RunStatus(str, enum.Enum):
    """Where a run is in its life: ``Queued`` and ``Running`` are live, the others final."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        """True once the run has ended."""
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

__all__ = ["RunStatus"]
