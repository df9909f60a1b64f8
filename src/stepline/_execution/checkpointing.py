"""Checkpointing: running several steps in one call, and when their results are persisted.

Two shapes, both offered by the engine per call (``ctx.qi_id``):

* **batched** (``checkpointing=True``, the default): the steps a call runs are reported
  with its answer and committed together; a call that runs more than a batch
  (``CheckpointPolicy.max_steps``, 100) has each batch committed before the next step's
  code runs, and goes on (it is not answered and called again, which would replay the
  run from its start). Fastest; a crash in the middle of a call runs again the steps
  since its last commit.
* **per step** (``checkpointing=Checkpointing(buffered_steps=1)``): each step's result is
  persisted before the next step's code runs, and the call goes on with no replay. A
  step, once its successor started, never runs again: the guarantee of one call per
  step (``checkpointing=False``) at the cost of one commit per step, not one call.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from stepline import _errors
from stepline._protocol.execution import Op

__all__ = [
    "CheckpointFailed",
    "CheckpointPolicy",
    "Checkpointer",
    "Checkpointing",
    "StepSink",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpointing:
    """How a call that runs several steps persists them (``Client(checkpointing=...)``).

    Args:
        buffered_steps: persist the completed steps once this many have accumulated,
            before the next step's code runs (1: every step, as Inngest's SDKs do by
            default). None reports them with the call's answer (``checkpointing=True``).
        max_runtime: seconds one call runs steps before it answers and the engine
            calls again (keep it under a serverless platform's time limit).
    """

    buffered_steps: int | None = 1
    max_runtime: float = 20.0

    def __post_init__(self) -> None:
        steps = self.buffered_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise _errors.ConfigError(f"buffered_steps must be an int >= 1, got {steps!r}")
        if steps is not None and steps < 1:
            raise _errors.ConfigError(f"buffered_steps must be an int >= 1, got {steps!r}")
        runtime = self.max_runtime
        if isinstance(runtime, bool) or not isinstance(runtime, (int, float)) or runtime <= 0:
            raise _errors.ConfigError(f"max_runtime must be seconds > 0, got {runtime!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """Limits on how many ``step.run``s one request may run before reporting.

    ``buffered_steps`` applies when the execution has a ``Checkpointer``: the completed
    steps are handed to it once that many have accumulated. ``max_steps``, otherwise:
    the steps are handed to the execution's committer once that many have accumulated,
    or, without one, the call answers with them. ``max_seconds``: the call answers.
    """

    max_steps: int = 100
    max_seconds: float = 20.0
    buffered_steps: int = 1


class Checkpointer(Protocol):
    """Persists completed steps before the next runs (see ``ExecutionState.take_due``).

    ``persists_on_failure``: when the function fails, the caller persists the steps not
    yet handed over itself (durable endpoints); otherwise they go with the answer.
    """

    persists_on_failure: bool

    def flush_sync(self, ops: list[Op]) -> None:
        """Persist ``ops`` (blocking)."""
        ...

    async def flush_async(self, ops: list[Op]) -> None:
        """Persist ``ops``."""
        ...


class CheckpointFailed(Exception):
    """The engine did not take a checkpoint: the steps go with the call's answer instead."""


class StepSink(Protocol):
    """An engine in this process taking a call's checkpoints without HTTP.

    Both raise ``CheckpointFailed`` when the steps were not recorded (the call's lease is
    gone, the run ended, the database failed).
    """

    def record_sync(self, run_id: str, qi_id: str, ops: list[Op]) -> None:
        """Commit ``ops`` for the call ``qi_id`` of ``run_id`` (blocking; not the engine's loop)."""
        ...

    async def record(self, run_id: str, qi_id: str, ops: list[Op]) -> None:
        """Commit ``ops`` for the call ``qi_id`` of ``run_id``."""
        ...
