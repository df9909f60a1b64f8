"""A recorded run played back to its end against the current code: any run as a test.

The function is called as the engine would call it, again and again, with
``disable_immediate_execution`` set: each call plans the code's next steps, and each one
is answered from the run's record, never run (a dropped output from ``outputs``). The
calls see the record's times as the clock, and the code between steps runs with
``ctx.dry_run`` True and the network refused. Playback stops at the first difference:

- the code plans a step the record does not have (or has not finished);
- the replay tracker finds recorded steps reached out of order, or not reached when the
  code returns;
- the code fails where the record went on, or the other way round;
- the output differs from the recorded one.

A run exported while live plays back to where it was (the step it waited on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepline._event import Event
from stepline._execution import invocation
from stepline._execution.call import ExecutionState, Outcome
from stepline._protocol.execution import CallContext, ExecutionRequest, unwrap_memo
from stepline._protocol.opcodes import Opcode
from stepline._replay import isolation
from stepline._replay.journal import Journal, JournalError, parse_time
from stepline._replay.local import error_location

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["Playback", "PlayedStep", "Player"]


@dataclasses.dataclass(frozen=True, slots=True)
class PlayedStep:
    """A step the code reached, answered from the record.

    Attributes:
        name: the step id the code gave.
        op: what it is (``StepRun``, ``Sleep``, ``WaitForEvent``, ``InvokeFunction``...).
        output: what the record answered (the value; None for a sleep or a failed step).
        location: where the code reached it (``file:line``).
    """

    name: str
    op: str
    output: Any
    location: str | None


@dataclasses.dataclass(slots=True)
class Playback:
    """What playing a run back showed.

    Attributes:
        journal: the record.
        steps: the steps the code reached, in the order it reached them.
        output: what the function returned (None if it did not).
        error: what it raised, if it did.
        difference: the first difference from the record, or None when it matched.
    """

    journal: Journal
    steps: list[PlayedStep] = dataclasses.field(default_factory=list)
    output: Any = None
    error: BaseException | None = None
    difference: str | None = None

    @property
    def same(self) -> bool:
        """Whether the code replays the record: the same steps, the same end."""
        return self.difference is None

    def assert_same(self) -> None:
        """Raise ``AssertionError`` naming the first difference, if there is one."""
        if self.difference is not None:
            raise AssertionError(
                f"run {self.journal.run_id} of {self.journal.function_id} does not replay as "
                f"recorded: {self.difference}"
            )


class Player:
    """Plays journals back against functions, in this process.

    Args:
        client: the app's client (its logger; nothing is sent through it).
        functions: the current code's functions.
    """

    def __init__(self, client: Client, functions: Sequence[Function]) -> None:
        self.client = client
        self.functions = {each.composite_id: each for fn in functions for each in fn.all()}

    def play_sync(self, journal: Journal, outputs: Mapping[str, Any] | None = None) -> Playback:
        """Play ``journal`` back (async functions on a loop of their own)."""
        fn, game = self._game(journal, outputs)
        loop = asyncio.new_event_loop() if fn.is_async else None
        try:
            while not game.over:
                state = game.next_call()
                with isolation.offline() as tried:
                    if loop is not None:
                        call = invocation.call_async(fn, state, self.client, game.events, game.now)
                        outcome = loop.run_until_complete(call)
                    else:
                        outcome = invocation.call_sync(
                            fn, state, self.client, game.events, game.now
                        )
                game.answered(state, outcome, tried.tried)
        finally:
            if loop is not None:
                loop.close()
        return game.result

    async def play(self, journal: Journal, outputs: Mapping[str, Any] | None = None) -> Playback:
        """Play ``journal`` back on the running loop (sync functions on this thread)."""
        fn, game = self._game(journal, outputs)
        while not game.over:
            state = game.next_call()
            with isolation.offline() as tried:
                if fn.is_async:
                    outcome = await invocation.call_async(
                        fn, state, self.client, game.events, game.now
                    )
                else:
                    outcome = invocation.call_sync(fn, state, self.client, game.events, game.now)
            game.answered(state, outcome, tried.tried)
        return game.result

    def _game(self, journal: Journal, outputs: Mapping[str, Any] | None) -> tuple[Function, _Game]:
        fn = self.functions.get(journal.function_id)
        if fn is None:
            known = ", ".join(sorted(self.functions)) or "none"
            raise JournalError(
                f'the run is of function "{journal.function_id}", which is not among the '
                f"functions given (they are: {known})"
            )
        return fn, _Game(fn, journal, dict(outputs or {}))


class _Game:
    """The state of one playback between calls (pure)."""

    def __init__(self, fn: Function, journal: Journal, outputs: dict[str, Any]) -> None:
        self.fn = fn
        self.journal = journal
        self.outputs = outputs
        self.result = Playback(journal)
        self.over = False
        self._memos: dict[str, Any] = {}
        self._order = {hashed: n for n, hashed in reversed(list(enumerate(journal.stack)))}
        self._calls = 0
        self._time = parse_time(journal.started_at or journal.created_at)
        events = journal.events or [{"name": "", "data": {}}]
        self.events = [Event.from_wire(e) for e in events]
        self._raw_events = events

    def now(self) -> _dt.datetime:
        """The record's time at this point of the run (the clock the step tools read)."""
        moment = self._time
        if moment is None:
            return invocation.utc_now()
        return _dt.datetime.fromtimestamp(moment, _dt.timezone.utc)

    def next_call(self) -> ExecutionState:
        """The state of the next call: every step answered so far, in recorded order."""
        self._calls += 1
        stack = sorted(self._memos, key=lambda i: self._order.get(i, len(self._order)))
        ctx = CallContext(
            run_id=self.journal.run_id,
            disable_immediate_execution=True,
            stack=stack,
            fn_id=self.fn.composite_id,
        )
        memos = json.loads(json.dumps(self._memos))
        events = json.loads(json.dumps(self._raw_events))
        state = ExecutionState(
            ExecutionRequest(events[0], events, memos, ctx), nondeterminism="warn"
        )
        state.dry_run = True
        if state.tracker is not None:
            state.tracker.locations = {}
        return state

    def answered(self, state: ExecutionState, outcome: Outcome, tried: Sequence[str]) -> None:
        """Take one call's outcome: answer its planned steps, or end the playback."""
        tracker = state.tracker
        locations = (tracker.locations if tracker is not None else None) or {}
        names = {s.id: s.name for s in self.journal.steps}
        if outcome.divergence is not None:
            self._differs(f"the code {outcome.divergence.describe()} (against the record)")
            return
        if tried:
            self._differs(f"the code outside steps tried the network: {tried[0]}")
            return
        if outcome.error is not None:
            self._ended_with_error(outcome.error)
            return
        if outcome.ops is None:
            self._returned(outcome.output)
            return
        planned = [op for op in outcome.ops if op.op is not Opcode.STEP_RUN]
        if len(planned) == 1 and self._out_of_turn(planned[0].id, planned[0].user_id, names):
            return
        for op in outcome.ops:
            if op.op is Opcode.STEP_RUN:  # its result is known as it is reached (a patch marker)
                self._memos[op.id] = {"data": op.data}
                continue
            recorded = self.journal.step(op.id)
            where = locations.get(op.id)
            at = f" at {where}" if where else ""
            if recorded is None or recorded.status == "Cancelled":
                expected = self._next_expected(names)
                self._differs(
                    f'the code reaches step "{op.user_id}" ({op.op.value}){at}, which the '
                    f"record does not have{expected}"
                )
                return
            if not recorded.done:  # where the live run was when exported
                self._add(recorded.name, recorded.op, None, where)
                self.over = True
                return
            memo = recorded.memo
            if recorded.dropped:
                if recorded.name not in self.outputs:
                    raise JournalError(
                        f'step "{recorded.name}" was exported without its output: pass '
                        f"outputs={{{recorded.name!r}: ...}} to replay it"
                    )
                memo = {"data": self.outputs[recorded.name]}
            self._memos[op.id] = memo
            value, _ = unwrap_memo(memo)
            self._add(recorded.name, recorded.op, value, where)
            ended = parse_time(recorded.ended_at)
            if ended is not None and (self._time is None or ended > self._time):
                self._time = ended
        if self._calls > 4 * len(self.journal.steps) + 8:  # the code plans answered steps
            self._differs("the code keeps planning steps the record already answered")

    def _out_of_turn(self, hashed_id: str, user_id: str, names: Mapping[str, str]) -> bool:
        """A lone step the record finished, reached before the one the record has next
        (a parallel group's steps come planned together and may finish in any order)."""
        recorded = self.journal.step(hashed_id)
        if recorded is None or not recorded.done:
            return False
        left = [i for i in self.journal.stack if i not in self._memos]
        if not left or left[0] == hashed_id:
            return False
        self._differs(
            f'the code reaches step "{user_id}" where the record has '
            f'"{names.get(left[0], left[0])}" next'
        )
        return True

    def _add(self, name: str, op: str, value: Any, where: str | None) -> None:
        self.result.steps.append(PlayedStep(name, op, value, where))

    def _next_expected(self, names: Mapping[str, str]) -> str:
        left = [i for i in self.journal.stack if i not in self._memos]
        if not left:
            return " (it has no step left: the function returned there)"
        return f' (next in the record: "{names.get(left[0], left[0])}")'

    def _returned(self, output: Any) -> None:
        self.result.output = output
        self.over = True
        journal = self.journal
        if journal.live:
            self._differs("the function returns where the live run was still waiting")
            return
        if journal.status != "Completed":
            self._differs(f"the function returns where the run ended {journal.status}")
            return
        left = [s.name for s in journal.steps if s.done and s.id not in self._memos]
        if left:
            self._differs(f"the function returns before the recorded step(s) {', '.join(left)}")
            return
        got = json.loads(json.dumps(output, default=str))
        if got != journal.output:
            self._differs(
                f"the output differs: recorded {json.dumps(journal.output)[:300]}, now "
                f"{json.dumps(got)[:300]}"
            )

    def _ended_with_error(self, error: BaseException) -> None:
        self.result.error = error
        self.over = True
        where = error_location(error)
        said = f"{type(error).__name__}: {error}{f' (at {where})' if where else ''}"
        recorded = self.journal.output
        if self.journal.status == "Failed" and isinstance(recorded, Mapping):
            name = getattr(error, "name", None) or type(error).__name__
            if recorded.get("name") in (name, type(error).__name__):
                return
        self._differs(f"the function raises {said} where the run {self._how_it_went()}")

    def _how_it_went(self) -> str:
        status = self.journal.status
        if status == "Completed":
            return "went on to complete"
        if status == "Failed" and isinstance(self.journal.output, Mapping):
            return f"failed with {self.journal.output.get('name')}"
        return f"was {status}"

    def _differs(self, text: str) -> None:
        self.over = True
        if self.result.difference is None:
            at = len(self.result.steps) + 1
            self.result.difference = f"at step {at}: {text}"
