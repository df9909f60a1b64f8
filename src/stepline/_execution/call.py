"""One execution of a user function: memo replay, step planning and reporting.

Pure and I/O-free: the ``Step``/``SyncStep`` facades call in here and only add the one
thing that differs between them, calling or awaiting the user's callable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from stepline import _errors, _serde
from stepline._execution import divergence as _divergence
from stepline._execution.checkpointing import Checkpointer, CheckpointPolicy
from stepline._protocol import hashing
from stepline._protocol.errors import error_body
from stepline._protocol.execution import ExecutionRequest, Op, unwrap_memo
from stepline._protocol.opcodes import Opcode, ParallelMode
from stepline._scope import Scope

if TYPE_CHECKING:
    from stepline._execution.publish import Publisher


class Interrupt(BaseException):
    """Control flow of the step machinery.

    A ``BaseException`` so that a user's ``except Exception`` cannot swallow it.
    """


class _Respond(Interrupt):
    """Stop the function: the response is the ops collected so far."""


class _Planned(Interrupt):
    """A parallel branch reached a new step; it was reported, the branch stops."""


class _Skip(Interrupt):
    """A parallel branch reached a step other than the targeted one."""


class _Diverged(Interrupt):
    """The replay diverged under the ``fail`` policy: stop before running new code."""


class _Fail(Interrupt):
    """End the function with an error that user code must not catch."""

    def __init__(self, error: _errors.SteplineError) -> None:
        super().__init__(error.message)
        self.error = error


#: Returned by ``begin_run`` when the step's callable must run now.
EXECUTE: Any = object()


@dataclasses.dataclass(slots=True)
class StepSlot:
    """The step being executed and, once it returns, its value."""

    user_id: str
    hashed_id: str
    index: int | None
    output_type: Any = None
    value: Any = None
    handle: object = None  # the observer's, while the step's code runs
    #: the op's ``opts`` for the engine (what a model-request step used, say); None: none
    opts: dict[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class Outcome:
    """How one execution ended: returned, reported ops, or failed."""

    output: Any = None
    ops: list[Op] | None = None
    error: BaseException | None = None
    no_retry: bool = False
    divergence: _divergence.Divergence | None = None
    #: the step whose ``NonRetriableError`` ended the function (``error``), if one did
    failed_step: StepSlot | None = None
    #: a step's ``RetryAfterError`` reported as its error beside steps this call ran
    #: (``ops``): the call's answer asks for the retry no sooner than it said
    retry_after: _errors.RetryAfterError | None = None


class StepObserver(Protocol):
    """Told when a step's code starts and ends (tracing); see ``ExecutionState.observer``."""

    def step_started(self, slot: StepSlot) -> object:
        """The step's code is about to run; the result is handed to ``step_ended``."""
        ...

    def step_ended(self, handle: object, error: BaseException | None) -> None:
        """The step's code returned, or raised ``error``."""
        ...


class ParallelGroup:
    """Collects the outputs of the branches of one ``parallel`` call."""

    __slots__ = ("outputs", "skipped")

    def __init__(self) -> None:
        self.outputs: list[Any] = []
        self.skipped = False

    @contextlib.contextmanager
    def branch(self) -> Iterator[None]:
        """Run one branch; a branch stopped at a new or untargeted step ends quietly."""
        try:
            yield
        except _Planned:
            pass
        except _Skip:
            self.skipped = True


class ExecutionState:
    """Everything one execution knows: memos, step counter, collected ops.

    ``run_on`` (no checkpointing; the engine in this process): a call still runs one
    step, but answers at the code's next new step (not reached) or its end, when the
    step and the result go together (``RunComplete``): one call and commit fewer a run.
    The code past the step runs as a replay does (``is_rerunning``); if it asked (to log,
    publish...) or raised, the step answers alone, as without ``run_on``.
    """

    def __init__(
        self,
        request: ExecutionRequest,
        *,
        checkpoint: CheckpointPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        nondeterminism: _divergence.Policy = "warn",
        run_on: bool = False,
    ) -> None:
        self.request = request
        ctx = request.ctx
        self._memos = request.steps
        self._unseen = len(request.steps)
        self._counter = hashing.StepIdCounter()
        self._target = None if ctx.step_id == "step" else ctx.step_id
        self._force_plan = ctx.disable_immediate_execution
        self._attempt = ctx.attempt
        self._max_attempts = ctx.max_attempts
        self._ops: list[Op] = []
        self._done: list[Op] = []  # steps run in this request under checkpointing
        #: one step a call, answered at the code's next step or with its end (``run_on``)
        self._run_on = run_on and checkpoint is None
        self._held_back = False  # running on, the code asked ``is_rerunning`` (it was)
        self._running: StepSlot | None = None
        #: a step that raised ``NonRetriableError`` (ending the function), and the error
        self._ended_by: tuple[StepSlot, BaseException] | None = None
        #: a step's ``RetryAfterError`` reported beside the steps this call ran
        self._retry_after: _errors.RetryAfterError | None = None
        self._parallel_depth = 0
        self._parallel_mode = ParallelMode.WAIT
        self._no_retry = False
        self._checkpoint = checkpoint
        self._clock = clock
        self._started = clock()
        self._patches: dict[str, bool] = {}
        #: follows the replay of an untargeted call (a targeted one stops at its step)
        self._tracker = (
            None
            if self._target is not None
            else _divergence.ReplayTracker(ctx.stack, request.steps, nondeterminism)
        )
        #: told when each step's code runs (tracing); None costs one check per step
        self.observer: StepObserver | None = None
        #: publishes on the run's stream (set for a served call; None: nowhere to publish)
        self.publisher: Publisher | None = None
        #: persists each step as it completes (durable endpoints); None: report at the end
        self.checkpointer: Checkpointer | None = None
        #: persists, when ``checkpointer`` is None, the steps a step that must not run
        #: twice demands committed at once (``step.commit_async``); None: the call answers
        self.committer: Checkpointer | None = None
        #: a deploy check or a test replays the run from its record (``ctx.dry_run``):
        #: nothing runs for real, so everything counts as running again
        self.dry_run = False

    @property
    def tracker(self) -> _divergence.ReplayTracker | None:
        """What follows this call's replay (None in a call targeting one step)."""
        return self._tracker

    @property
    def is_replaying(self) -> bool:
        """True while memoized steps remain ahead of the code being run."""
        return self._unseen > 0

    @property
    def is_rerunning(self) -> bool:
        """True while the code being run already ran in an earlier request.

        That is while replaying, and in a call targeting one step (planned in parallel, or
        with immediate execution disabled) until that step's own code runs; and past the
        step a ``run_on`` call ran (noted: the run's end then waits for the next call).
        """
        if self._run_on and self._done:
            self._held_back = True
            return True
        return (
            self._unseen > 0 or (self._target is not None and self._running is None) or self.dry_run
        )

    @property
    def current_step(self) -> str | None:
        """The id of the step whose code is running, if any."""
        return None if self._running is None else self._running.user_id

    # -- steps ---------------------------------------------------------------------------

    def begin_run(self, user_id: str, output_type: Any = None) -> Any:
        """Start ``step.run``: the memoized value, or ``EXECUTE`` with the step armed."""
        if self._running is not None or not isinstance(user_id, str) or not user_id:
            self._next_id(user_id)  # raises what a nested step or a bad id raises
        hashed, index = self._counter.next(user_id)  # ``_next_id``, inline: every replay
        # ``_replay``, inline, with ``unwrap_memo``'s usual case: each call comes here for
        # every step the run has recorded (a replay needs no slot)
        raw = self._memos.get(hashed, _MISSING)
        if raw is not _MISSING:
            self._unseen -= 1
            if self._tracker is not None:
                self._tracker.reached(hashed, user_id)
            if type(raw) is dict and len(raw) == 1 and "data" in raw:  # a value, recorded
                value = raw["data"]
            else:
                value = _memo_value(raw)
            return value if output_type is None else _serde.revive(value, output_type)
        slot = StepSlot(user_id, hashed, index, output_type)
        self._plan(slot, Opcode.STEP_RUN, runnable=True)
        self._running = slot
        return EXECUTE

    def executing(self) -> Scope[StepSlot]:
        """Wrap the call of a step's callable; failures become ``StepError``/``StepFailed``."""
        return Scope(self.start_executing(), self._executed)

    def start_executing(self) -> StepSlot:
        """The armed step's code starts (``executing``, unwrapped: the caller then calls
        ``executed`` however the code ended, raising again what it raised)."""
        slot = self._running
        assert slot is not None, "begin_run must arm a step first"
        if self.observer is not None:
            slot.handle = self.observer.step_started(slot)
        return slot

    def _executed(self, slot: StepSlot, error: BaseException | None) -> bool:
        self.executed(slot, error)
        return False  # what the code raised goes on: the step's outcome is recorded

    def executed(self, slot: StepSlot, error: BaseException | None) -> None:
        """The step's code ended, raising ``error`` (None: it returned ``slot.value``)."""
        self._running = None
        try:
            if isinstance(error, _errors.NonRetriableError):
                if self._done:
                    # Steps already ran in this request: reporting the error alone would
                    # drop them and run this step again on the next call. Fail the step
                    # for good beside them instead; the replay raises StepError.
                    self._report_failure(slot, error)
                else:  # the answer names the step, so the engine lists the failure under it
                    self._ended_by = (slot, error)
                return  # it ends the function, not just the step (as in inngest-py)
            if isinstance(error, _errors.RetryAfterError) and (
                self._done or isinstance(error, _errors.RetryAfterFailure)
            ):
                # Steps already ran in this call: answering the error alone would drop them
                # (they go with the answer) and run this step again at once. Report it as
                # the step's error beside them, the answer carrying when to retry. A
                # RetryAfterFailure is the step's own exception: always the step's error.
                self._retry_after = error
                self._report_failure(slot, error)
            if isinstance(error, Exception) and not isinstance(error, _errors.RetryAfterError):
                self._report_failure(slot, error)
            # else nothing failed, or an interrupt or a retry-after is on its way
        finally:
            if self.observer is not None:
                self.observer.step_ended(slot.handle, error)

    def finish_run(self, slot: StepSlot) -> Any:
        """Record a step's value: report it now, or keep going when checkpointing."""
        try:
            data = _serde.to_jsonable(slot.value, what=f'output of step "{slot.user_id}"')
        except _errors.OutputUnserializableError as exc:
            raise _Fail(exc) from None
        op = Op(Opcode.STEP_RUN, slot.hashed_id, slot.user_id, slot.index, data=data)
        if slot.opts is not None:
            op.opts = slot.opts
        self._complete(op)
        # the code goes on (checkpointing, ``run_on``): with a copy, so that what it does
        # to the value changes nothing the step reports, as a replay's memo is its own
        return _serde.revive(_serde.to_jsonable(data), slot.output_type)

    def take_done(self) -> list[Op]:
        """The steps completed since the last call, handed over to be persisted."""
        done, self._done = self._done, []
        return done

    def is_recorded(self, user_id: str) -> bool:
        """Whether the next use of ``user_id`` is a recorded step (nothing is consumed)."""
        return self._counter.peek(user_id) in self._memos

    def take_due(self) -> list[Op]:
        """``take_done`` once enough steps have accumulated to persist them, else []:
        under a ``checkpointer``, the policy's ``buffered_steps``; under a ``committer``
        alone (steps reported with the answer), its ``max_steps``, one call's batch, which
        the engine then commits while the call goes on (see ``_complete``)."""
        policy = self._checkpoint
        if policy is None:
            return []
        due = policy.buffered_steps if self.checkpointer is not None else policy.max_steps
        if len(self._done) < due:
            return []
        done, self._done = self._done, []
        return done

    def answer_with(self, ops: list[Op]) -> NoReturn:
        """A checkpoint failed: ``ops`` go with the call's answer, which is sent now."""
        self._done[:0] = ops
        raise _Respond

    def patched(self, change_id: str) -> bool:
        """``ctx.patched``: the recorded answer, else False while replaying, else True.

        The answer is recorded as a step (``patched:<change-id>``), so it never flips for
        a run; under checkpointing recording costs no extra call. In a targeted call (the
        run planned its step on code without the patch) the answer is False, unrecorded.
        """
        known = self._patches.get(change_id)
        if known is not None:
            return known
        slot = self._begin(_patch_step_id(change_id))
        if self._tracker is not None:
            self._tracker.exempt(slot.hashed_id)
        found, value = self._replay(slot.hashed_id, slot.user_id)
        answer = bool(value) if found else self._target is None and not self.is_replaying
        self._patches[change_id] = answer
        if not found and self._target is None:
            label = f"patched: {change_id}"
            self._complete(
                Op(Opcode.STEP_RUN, slot.hashed_id, slot.user_id, slot.index, data=answer),
                display_name=label,
            )
        return answer

    def deprecate_patch(self, change_id: str) -> None:
        """``ctx.deprecate_patch``: consume the patch's marker, if recorded; record nothing."""
        if change_id in self._patches:
            return
        slot = self._begin(_patch_step_id(change_id))
        self._patches[change_id] = True
        if self._tracker is not None:
            self._tracker.exempt(slot.hashed_id)
        if slot.hashed_id in self._memos:
            self._unseen -= 1

    def op_step(
        self,
        user_id: str,
        opcode: Opcode,
        *,
        name: str | None = None,
        opts: dict[str, Any] | None = None,
    ) -> Any:
        """A step the engine performs (sleep, wait, invoke): its memo, or report it."""
        slot = self._begin(user_id)
        found, value = self._replay(slot.hashed_id, slot.user_id)
        if found:
            return value
        self._plan(slot, opcode, runnable=False, name=name, opts=opts)
        raise AssertionError("unreachable: _plan raises for engine steps")  # pragma: no cover

    @contextlib.contextmanager
    def parallel(self, mode: ParallelMode) -> Iterator[ParallelGroup]:
        """Run branches in discovery mode; report every new step found in them."""
        if self._running is not None:
            raise _errors.NestedStepError
        group = ParallelGroup()
        outer_mode, self._parallel_mode = self._parallel_mode, mode
        reported = len(self._ops)
        self._parallel_depth += 1
        if self._tracker is not None:
            self._tracker.enter_group(mode is ParallelMode.RACE)
        try:
            yield group
        finally:
            self._parallel_depth -= 1
            self._parallel_mode = outer_mode
            if self._tracker is not None:
                self._tracker.exit_group()
        if len(self._ops) > reported:
            raise _Planned if self._parallel_depth else _Respond
        if group.skipped:
            # The targeted step is not in this group: nothing here may complete.
            raise _Skip if self._parallel_depth else _Respond

    # -- the function as a whole ---------------------------------------------------------

    def function_call(self, outcome: Outcome) -> Scope[Outcome]:
        """Run the user function; fill ``outcome`` however it ends."""
        return Scope(outcome, self.function_ended)

    def function_ended(self, outcome: Outcome, raised: BaseException | None) -> bool:
        """Fill ``outcome`` for a function that ended raising ``raised`` (None: it
        returned ``outcome.output``); False when ``raised`` is not the function's to
        answer and must go on (``function_call``, unwrapped)."""
        if raised is None:
            if self._done and self._held_back:  # the next call replays it and returns
                outcome.ops = list(self._done)
            elif self._done:  # report completion along with the checkpointed steps
                try:
                    data = _serde.to_jsonable(outcome.output, what="function output")
                except _errors.OutputUnserializableError as exc:
                    outcome.error = exc
                else:
                    done = Op(Opcode.RUN_COMPLETE, hashing.RUN_COMPLETE_ID, "complete", data=data)
                    outcome.ops = [*self._done, done]
        elif isinstance(raised, _Respond | _Planned | _Skip):
            outcome.ops = self._done + self._ops
            outcome.retry_after = self._retry_after
        elif isinstance(raised, _Fail):
            outcome.error = raised.error
        elif isinstance(raised, Exception):
            outcome.error = raised
            if self._ended_by is not None and self._ended_by[1] is raised:
                outcome.failed_step = self._ended_by[0]
        elif not isinstance(raised, _Diverged):  # the verdict below fails a diverged call
            return False  # not the function's to answer: on its way
        persisting = self.checkpointer is not None and self.checkpointer.persists_on_failure
        if outcome.error is not None and self._done and not persisting:
            # Keep the steps that succeeded; the failure is met again on the next call
            # (a durable endpoint persists them itself, then reports the failure).
            outcome.ops, outcome.error = list(self._done), None
        outcome.no_retry = self._no_retry
        if self._tracker is not None:
            outcome.divergence = self._tracker.result(returned=raised is None)
            if outcome.divergence is not None and outcome.divergence.policy == "fail":
                outcome.ops, outcome.output = None, None
                outcome.error = outcome.divergence.error()
        return True

    # -- internals -----------------------------------------------------------------------

    def _begin(self, user_id: str) -> StepSlot:
        return StepSlot(user_id, *self._next_id(user_id))

    def _next_id(self, user_id: str) -> tuple[str, int | None]:
        if self._running is not None:
            raise _errors.NestedStepError
        if not isinstance(user_id, str) or not user_id:
            raise _Fail(_errors.ConfigError("a step id must be a non-empty string"))
        return self._counter.next(user_id)

    def _replay(self, hashed_id: str, user_id: str) -> tuple[bool, Any]:
        raw = self._memos.get(hashed_id, _MISSING)
        if raw is _MISSING:
            return False, None
        self._unseen -= 1
        if self._tracker is not None:
            self._tracker.reached(hashed_id, user_id)
        return True, _memo_value(raw)

    def _plan(
        self,
        slot: StepSlot,
        opcode: Opcode,
        *,
        runnable: bool,
        name: str | None = None,
        opts: dict[str, Any] | None = None,
    ) -> None:
        self._boundary()
        tracker = self._tracker
        if tracker is not None:
            tracker.found_new(slot.hashed_id, slot.user_id)
            if tracker.policy == "fail" and not self._parallel_depth and tracker.diverged_so_far():
                raise _Diverged  # before the new step's code runs
        op = Op(opcode, slot.hashed_id, slot.user_id, slot.index, name=name, opts=opts)
        if self._target is not None:
            if slot.hashed_id != self._target:
                if self._parallel_depth:
                    raise _Skip
                raise _Fail(
                    _errors.StepUnexpectedError(
                        f'found step "{slot.user_id}" when targeting a different step'
                    )
                )
            if runnable:
                return
        elif self._parallel_depth:
            if runnable:
                op.op = Opcode.STEP_PLANNED
            if self._parallel_mode is ParallelMode.RACE:
                op.opts = {**(op.opts or {}), "parallelMode": ParallelMode.RACE.value}
            self._ops.append(op)
            raise _Planned
        elif runnable:
            if not self._force_plan:
                return
            op.op = Opcode.STEP_PLANNED
        self._ops.append(op)
        raise _Respond

    def _complete(self, op: Op, *, display_name: str | None = None) -> None:
        """Record a step whose result is known: report it now, or keep going when checkpointing."""
        op.display_name = display_name
        self._boundary()
        if self._run_on and self._unplanned():  # the code runs on: to its next step, or end
            self._done.append(op)
            return
        if not self._may_checkpoint():
            self._ops.append(op)
            raise _Planned if self._parallel_depth and self._target is None else _Respond
        self._done.append(op)
        policy = self._checkpoint
        assert policy is not None  # ``_may_checkpoint`` said so
        if self._clock() - self._started >= policy.max_seconds:
            raise _Respond
        if len(self._done) >= policy.max_steps and self.committer is None:
            raise _Respond
        # with a committer the batch is committed before the next step's code runs
        # (``step.persist_*``) and the call goes on: a long run is not replayed from its
        # start by a new call every ``max_steps`` steps

    def _report_failure(self, slot: StepSlot, exc: Exception) -> None:
        retriable = exc.retriable if isinstance(exc, _errors.SteplineError) else True
        final = not retriable or (
            self._max_attempts is not None and self._attempt + 1 >= self._max_attempts
        )
        opcode = Opcode.STEP_FAILED if final else Opcode.STEP_ERROR
        self._no_retry = self._no_retry or not retriable
        self._ops.append(
            Op(opcode, slot.hashed_id, slot.user_id, slot.index, error=error_body(exc))
        )
        raise _Respond

    def _boundary(self) -> None:
        """With ``run_on``, the code reached a new step after one ran: answer with it."""
        if self._run_on and self._done:
            raise _Respond

    def _unplanned(self) -> bool:
        """Not targeted, not planning, not in a parallel group: steps may run on."""
        return self._target is None and not self._force_plan and not self._parallel_depth

    def _may_checkpoint(self) -> bool:
        return self._checkpoint is not None and self._unplanned()


_MISSING: Any = object()


def _memo_value(raw: Any) -> Any:
    """A memo's value; a failed step's memo raises its ``StepError``."""
    value, error = unwrap_memo(raw)
    if error is not None:
        raise _errors.StepError(
            str(error.get("message", "")),
            name=str(error.get("name", "Error")),
            stack=error.get("stack") if isinstance(error.get("stack"), str) else None,
        )
    return value


def _patch_step_id(change_id: str) -> str:
    if not isinstance(change_id, str) or not change_id:
        raise _Fail(_errors.ConfigError("a patch's change id must be a non-empty string"))
    return f"patched:{change_id}"
