"""Per-step checkpoints of the calls the engine makes: over HTTP, and in this process.

An SDK running a call with ``Checkpointing(buffered_steps=n)`` commits its completed
steps before the next step's code runs. Over HTTP that is ``POST
/v1/checkpoint/{run}/async`` (``Engine.checkpoint``, then ``record_http``); to an app
served in this process the engine hands this object with the call
(``CommRequest.local``), and a step is committed from the thread the function runs on:
no HTTP, no JSON, and on SQLite no thread hand-off when the writer is idle
(``SqliteStore.atomic_blocking``). Both check that the call still holds its lease
(``qi_id``: the job and the lease epoch it was called under, so a call given up and
leased again, by this node or another, is fenced off) and that the run has not ended; if
not, the SDK stops at that step boundary and answers with what it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stepline._execution.checkpointing import CheckpointFailed
from stepline._protocol.execution import Op
from stepline.engine._clock import Clock
from stepline.engine._config import EngineSettings
from stepline.engine._errors import NotFoundError
from stepline.engine._model import Run, call_of, storable
from stepline.engine._runs import recording
from stepline.engine._store import Store, Tx
from stepline.engine._wire import response

if TYPE_CHECKING:
    from stepline.engine._runs.transitions import RunTransitions

__all__ = ["CallLost", "LocalCheckpoints"]


class CallLost(RuntimeError):
    """The checkpoint's call no longer holds its lease, or its run ended (HTTP 409)."""


class _CheckpointEngine(Protocol):
    """What of the engine a checkpoint needs (``Engine`` has it)."""

    settings: EngineSettings
    store: Store
    clock: Clock

    @property
    def transitions(self) -> RunTransitions: ...

    def committed(self, wake: bool = True, ended: Sequence[Run] | None = None) -> None: ...

    def committed_threadsafe(self, wake: bool, ended: Sequence[Run] | None) -> None: ...


class LocalCheckpoints:
    """The engine's ``StepSink`` (in-process calls) and its checkpoint route's work."""

    def __init__(self, engine: _CheckpointEngine) -> None:
        self.engine = engine

    # -- the SDK in this process (StepSink) ---------------------------------------------

    def record_sync(self, run_id: str, qi_id: str, ops: list[Op]) -> None:
        """Commit ``ops`` from the calling thread (not the engine's loop)."""
        engine = self.engine
        reported = self._reported(ops)
        try:
            wake, ended = engine.store.atomic_blocking(self._work(run_id, qi_id, reported))
        except Exception as exc:  # CallLost, a database fault
            raise CheckpointFailed(str(exc)) from exc
        if wake or ended:
            engine.committed_threadsafe(wake, ended)

    async def record(self, run_id: str, qi_id: str, ops: list[Op]) -> None:
        """Commit ``ops`` (an async function, on the engine's loop)."""
        reported = self._reported(ops)
        try:
            work = self._work(run_id, qi_id, reported)
            wake, ended = await self.engine.store.atomic(work, small=True)
        except Exception as exc:  # CallLost, a database fault
            raise CheckpointFailed(str(exc)) from exc
        self._committed(wake, ended)

    # -- POST /v1/checkpoint/{run}/async ------------------------------------------------

    async def record_http(
        self, run_id: str, body: object, ops: tuple[response.ReportedOp, ...]
    ) -> None:
        """Commit the ops of a checkpoint body (read by ``response.checkpoint_ops``).

        Raises:
            CallLost: its ``qi_id`` is no longer leased, or the run ended.
        """
        qi_id = body.get("qi_id") if isinstance(body, dict) else None
        work = self._work(run_id, qi_id if isinstance(qi_id, str) else None, ops)
        self._committed(*await self.engine.store.atomic(work, small=True))

    # -- once -----------------------------------------------------------------------------

    def _work(
        self, run_id: str, qi_id: str | None, ops: tuple[response.ReportedOp, ...]
    ) -> Callable[[Tx], tuple[bool, list[Run]]]:
        """The transaction recording ``ops``; it returns whether it queued jobs, and the
        runs it ended.

        It raises ``CallLost`` (and so writes nothing) when the call ``qi_id`` is not
        leased for ``run_id`` or the run has ended, and ``NotFoundError`` when there is no
        run ``run_id`` (so the checkpoint route needs no read of its own first).
        """
        engine = self.engine

        def work(tx: Tx) -> tuple[bool, list[Run]]:
            job = None
            if qi_id is not None:
                job_id, epoch = call_of(qi_id)
                job = tx.get_call(job_id)  # with its run's row: the checkpoint reads it next
                if (
                    job is None
                    or job.run_id != run_id
                    or job.lease_owner is None
                    or (epoch is not None and job.lease_epoch != epoch)  # leased again since
                ):
                    if tx.get_run(run_id) is None:  # the caller's mistake first: 404
                        raise NotFoundError(f"run {run_id!r} not found")
                    raise CallLost(
                        f"run {run_id}: call {qi_id} is no longer leased (it ended, or "
                        "lapsed and went back to the queue): answer with the steps instead"
                    )
            now = engine.clock.now()
            if not recording.checkpoint(tx, engine.transitions, run_id, ops, job=job, now=now):
                raise CallLost(f"run {run_id} has ended: its steps are not recorded")
            return bool(tx.queued), tx.ended_runs

        return work

    def _committed(self, wake: bool, ended: list[Run]) -> None:
        """Tell the engine (on its loop) what a checkpoint's commit changed."""
        if wake or ended:
            self.engine.committed(wake, ended)

    def _reported(self, ops: list[Op]) -> tuple[response.ReportedOp, ...]:
        """The SDK's ops as the engine reads a checkpoint body, with the same checks
        (sync ops only, storable texts, outputs within the limit) and no JSON."""
        reported = tuple(map(_reported, ops))
        problem = response.oversized_output(reported, self.engine.settings.max_step_output_bytes)
        if problem is not None:
            raise CheckpointFailed(problem)
        return reported


def _reported(op: Op) -> response.ReportedOp:
    """One op as ``_response`` would read its wire form (``Op.to_wire``)."""
    name = op.user_id if op.name is None else op.name
    label = (op.user_id if op.display_name is None else op.display_name) or name or op.id
    if op.op not in response.CHECKPOINTABLE:
        raise CheckpointFailed(f"op {op.op.value} cannot be checkpointed")
    if not (storable(op.id) and storable(name) and storable(label)):
        raise CheckpointFailed("ids and names must not hold NUL or lone surrogates")
    opts: dict[str, Any] = op.opts or {}
    return response.ReportedOp(op.op, op.id, name, label, opts, op.data, op.error)
