"""Per-step checkpoints of an engine-initiated call (``Checkpointing(buffered_steps=n)``).

The call keeps running steps; before a new step's code runs, the steps completed since
the last checkpoint are committed by the engine: ``POST /v1/checkpoint/{run}/async``
(Inngest's async checkpoint, bearer signing key), or, when the engine runs in this
process and made the call itself, its ``StepSink`` with no HTTP at all. A checkpoint the
engine refuses or cannot take ends the call at that boundary: its steps go with the
answer (as Inngest's SDKs fall back), and nothing is lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from stepline._api import runs as _runs
from stepline._execution.checkpointing import CheckpointFailed, StepSink
from stepline._protocol.execution import CallContext, Op
from stepline._transport import effects

if TYPE_CHECKING:
    from stepline._client import Client

__all__ = ["RunCheckpoints"]

logger = logging.getLogger("stepline")


class RunCheckpoints:
    """The ``Checkpointer`` of one engine-initiated call.

    Args:
        client: the app's client (the engine's address and signing key).
        ctx: the call's context (run id, function id, ``qi_id``).
        sink: the engine in this process that made the call, if it did.
    """

    #: a failed function's steps not yet persisted go with its answer
    persists_on_failure = False

    def __init__(self, client: Client, ctx: CallContext, sink: StepSink | None) -> None:
        self.client = client
        self.run_id = ctx.run_id
        self.fn_id = ctx.fn_id
        self.qi_id = str(ctx.qi_id)
        self._sink = sink

    def flush_sync(self, ops: list[Op]) -> None:
        """Commit ``ops`` before the next step (blocking); ``CheckpointFailed`` if not."""
        try:
            if self._sink is not None:
                self._sink.record_sync(self.run_id, self.qi_id, ops)
            else:
                self.client.connection.run_sync(self._flow(ops))
        except (CheckpointFailed, _runs.ManagementError) as exc:
            raise self._failed(exc) from exc

    async def flush_async(self, ops: list[Op]) -> None:
        """Commit ``ops`` before the next step; ``CheckpointFailed`` if not."""
        try:
            if self._sink is not None:
                await self._sink.record(self.run_id, self.qi_id, ops)
            else:
                await self.client.connection.run_async(self._flow(ops))
        except (CheckpointFailed, _runs.ManagementError) as exc:
            raise self._failed(exc) from exc

    def _flow(self, ops: list[Op]) -> effects.Flow[Any]:
        body = {
            "run_id": self.run_id,
            "fn_id": self.fn_id,
            "qi_id": self.qi_id,
            "steps": [op.to_wire() for op in ops],
        }
        path = f"/v1/checkpoint/{self.run_id}/async"
        return _runs.call(self.client.settings, "POST", path, body, what=self.run_id)

    def _failed(self, exc: Exception) -> CheckpointFailed:
        logger.warning(
            "run %s: checkpoint not taken (%s); its steps go with the call's answer",
            self.run_id,
            exc,
        )
        return CheckpointFailed(str(exc))
