"""Replaying a recorded run against functions in this process, without running a step.

One call of the function, as the engine would make once the run resumes: every done
step answered from the journal, what the run waits on (a sleep, a wait, an invocation)
answered with a stand-in (``None``: a sleep's real answer, a wait's timeout), and
``disable_immediate_execution`` set, so the first new step is planned, never run. The
call's replay tracker (``_execution.divergence``) says whether the code still reaches the
recorded steps in order, and where (``file:line``) it reaches each. The code between steps
runs with ``ctx.dry_run`` True and the network refused (``isolation``).

``Replay`` and ``classify`` are pure; ``Replayer`` makes the calls, blocking or awaited.
"""

from __future__ import annotations

import asyncio
import json
import os
import sysconfig
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepline._execution import invocation
from stepline._execution.call import ExecutionState, Outcome
from stepline._protocol.execution import CallContext, ExecutionRequest
from stepline._protocol.opcodes import Opcode
from stepline._replay import isolation
from stepline._replay.journal import ENGINE_OPS, Journal
from stepline._replay.verdict import RunVerdict, StepRef

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function
    from stepline._event import Event

__all__ = ["Replay", "Replayer", "classify", "error_location"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: where the standard library and installed packages live: not the user's own code
_LIBRARIES = tuple(
    {
        os.path.join(path, "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)


class Replay:
    """One run's replay against one function, between calls (pure).

    A call answers when the code reaches its first new step; but a step whose result the
    code knows as it reaches it (a ``ctx.patched`` marker) is answered too, and the next
    call goes on past it with it as a memo (``goes_on``), as the engine's would.
    """

    def __init__(self, fn: Function, journal: Journal) -> None:
        self.fn = fn
        self.journal = journal
        waiting = [s.id for s in journal.pending() if s.op in ENGINE_OPS]
        self.memos: dict[str, Any] = dict(journal.memos())
        #: what the run waits on, answered with ``None``: a sleep's answer, a wait's timeout
        self.stand_ins = {i for i in waiting if i not in self.memos}
        self.memos.update(dict.fromkeys(self.stand_ins))
        self.stack = [*journal.stack, *(i for i in waiting if i in self.stand_ins)]
        self._calls = 0

    def call(self) -> tuple[ExecutionState, list[Event]]:
        """The next call's state (a dry run that locates steps) and its events."""
        self._calls += 1
        # the function gets copies of its own: its code may change what it is given
        memos, events = json.loads(json.dumps([self.memos, self.journal.events]))
        events = events or [{"name": "", "data": {}}]
        ctx = CallContext(
            run_id=self.journal.run_id,
            disable_immediate_execution=True,
            stack=list(self.stack),
            fn_id=self.fn.composite_id,
        )
        request = ExecutionRequest(events[0], events, memos, ctx)
        state = ExecutionState(request, nondeterminism="warn")
        state.dry_run = True
        if state.tracker is not None:
            state.tracker.locations = {}
        return state, invocation.parse_events(state)

    def goes_on(self, outcome: Outcome) -> bool:
        """Whether the call answered only steps with known results: then they are memos
        of the next call, which goes on past them."""
        ops = outcome.ops
        if not ops or outcome.divergence is not None or self._calls > _MOST_CALLS:
            return False
        if any(op.op is not Opcode.STEP_RUN for op in ops):
            return False
        for op in ops:
            self.memos[op.id] = {"data": op.data}
            self.stack.append(op.id)
        return True


#: calls of one replay at most (each answers at least one patch marker)
_MOST_CALLS = 256


def classify(
    journal: Journal,
    state: ExecutionState,
    outcome: Outcome,
    stand_ins: set[str],
    tried: Sequence[str],
) -> RunVerdict:
    """The verdict of one replay (see ``verdict`` for what each kind means)."""
    tracker = state.tracker
    locations = (tracker.locations if tracker is not None else None) or {}
    names = {s.id: s.name for s in journal.steps}

    def refs(ids: Sequence[str]) -> tuple[StepRef, ...]:
        return tuple(StepRef(i, names.get(i, i), locations.get(i)) for i in ids)

    notes = tuple(f"refused: {attempt}" for attempt in dict.fromkeys(tried))
    divergence = outcome.divergence
    if divergence is not None:
        names.update(divergence.names)
        departs, expected = _departure(
            list(locations), [*journal.stack, *sorted(stand_ins)], set(divergence.new)
        )
        return RunVerdict.of(
            journal,
            "diverged",
            missing=refs(divergence.missing),
            reordered=refs(divergence.reordered),
            new=refs(divergence.new),
            departs=None if departs is None else refs([departs])[0],
            expected=None if expected is None else refs([expected])[0],
            notes=notes,
        )
    error = outcome.error
    if error is None:
        return RunVerdict.of(journal, "ok", notes=notes)
    if _same_failure(journal, error):  # an ended run that failed fails again the same way
        return RunVerdict.of(journal, "ok", notes=notes)
    where = error_location(error)
    said = f"{type(error).__name__}: {error}{f' (at {where})' if where else ''}"
    recorded = journal.memos()
    unreached = [i for i in journal.stack if i in recorded and not _reached(state, i)]
    if isinstance(error, isolation.NetworkBlockedError):
        return RunVerdict.of(
            journal,
            "inconclusive",
            error=f"the code outside steps tried the network{f' at {where}' if where else ''}",
            notes=notes,
        )
    if unreached:
        return RunVerdict.of(
            journal,
            "failed",
            missing=refs(unreached[:1]),
            error=f"the new code raises {said} before it is past the recorded steps",
            notes=notes,
        )
    if any(_reached(state, i) for i in stand_ins):
        waited = ", ".join(f'"{names.get(i, i)}"' for i in stand_ins)
        return RunVerdict.of(
            journal,
            "inconclusive",
            error=f"the code raises {said} past the record, where the check answered "
            f"{waited} with a stand-in (None)",
            notes=notes,
        )
    return RunVerdict.of(
        journal,
        "failed",
        error=f"the new code raises {said} right after the recorded steps: the run would "
        "fail on its next call",
        notes=notes,
    )


def _departure(
    reached: Sequence[str], recorded: Sequence[str], new: set[str]
) -> tuple[str | None, str | None]:
    """The first step the code reached (``reached``: in the order it first reached them)
    where the record (``recorded``: completion order) has another, and that other one."""
    steps = [i for i in reached if i in new or i in recorded]
    k = 0
    for hashed_id in steps:
        if k < len(recorded) and hashed_id == recorded[k]:
            k += 1
            continue
        return hashed_id, recorded[k] if k < len(recorded) else None
    return None, recorded[k] if k < len(recorded) else None


def _same_failure(journal: Journal, error: BaseException) -> bool:
    recorded = journal.output
    if journal.status != "Failed" or not isinstance(recorded, dict):
        return False
    return recorded.get("name") in (getattr(error, "name", None), type(error).__name__)


def _reached(state: ExecutionState, hashed_id: str) -> bool:
    tracker = state.tracker
    return tracker is not None and tracker.was_reached(hashed_id)


def error_location(error: BaseException) -> str | None:
    """Where the error was raised in the user's code: the innermost frame of the traceback
    outside Stepline, the standard library and installed packages (else outside Stepline)."""
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_PACKAGE)
    ]
    if not frames:
        return None
    own = [f for f in frames if not f.filename.startswith(_LIBRARIES)]
    found = (own or frames)[-1]
    try:
        path = os.path.relpath(found.filename)
    except ValueError:  # another drive (Windows)
        path = found.filename
    return f"{found.filename if path.startswith('..') else path}:{found.lineno}"


class Replayer:
    """Replays journals against one set of functions (their composite ids), in this process.

    Args:
        client: the app's client (its logger; nothing is sent through it).
        functions: the new code's functions.
    """

    def __init__(self, client: Client, functions: Sequence[Function]) -> None:
        self.client = client
        #: each function and its ``on_failure`` handler, whose runs are recorded as any
        self.functions = {each.composite_id: each for fn in functions for each in fn.all()}
        self._loop: asyncio.AbstractEventLoop | None = None

    def gone(self, journal: Journal) -> RunVerdict | None:
        """The verdict of a run whose function the new code no longer has, else None."""
        if journal.function_id in self.functions:
            return None
        known = ", ".join(sorted(self.functions)) or "none"
        return RunVerdict(
            run_id=journal.run_id,
            function_id=journal.function_id,
            app_id=journal.app_id,
            run_status=journal.status,
            app_version=journal.app_version,
            verdict="failed",
            error=f'function "{journal.function_id}" is not in the new code (it has: {known})',
        )

    def check_sync(self, journal: Journal) -> RunVerdict:
        """Replay one run (async functions on a private loop); never from a running loop."""
        gone = self.gone(journal)
        if gone is not None:
            return gone
        fn = self.functions[journal.function_id]
        replay = Replay(fn, journal)
        with isolation.offline() as tried:
            while True:
                state, events = replay.call()
                if fn.is_async:
                    if self._loop is None:
                        self._loop = asyncio.new_event_loop()
                    call = invocation.call_async(fn, state, self.client, events)
                    outcome = self._loop.run_until_complete(call)
                else:
                    outcome = invocation.call_sync(fn, state, self.client, events)
                if not replay.goes_on(outcome):
                    break
        return classify(journal, state, outcome, replay.stand_ins, tried.tried)

    async def check(self, journal: Journal) -> RunVerdict:
        """Replay one run on the running loop (sync functions on this thread)."""
        gone = self.gone(journal)
        if gone is not None:
            return gone
        fn = self.functions[journal.function_id]
        replay = Replay(fn, journal)
        with isolation.offline() as tried:
            while True:
                state, events = replay.call()
                if fn.is_async:
                    outcome = await invocation.call_async(fn, state, self.client, events)
                else:
                    outcome = invocation.call_sync(fn, state, self.client, events)
                if not replay.goes_on(outcome):
                    break
        return classify(journal, state, outcome, replay.stand_ins, tried.tried)

    def close(self) -> None:
        """Close the private loop, if one was made."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None
