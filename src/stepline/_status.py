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

    #: True once the run has ended (an attribute of each member, set below: read on every
    #: step, where a property would be a call)
    terminal: bool


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
for _member in RunStatus:
    _member.terminal = _member in _TERMINAL

__all__ = ["RunStatus"]
