"""Run journals written by hand, as the engine records them, for tests of the replay core.

``recorded(function_id, done, pending)``: ``done`` steps completed in that order (name, op
and memo), ``pending`` ones the live run waits on (name, op, status); hashed ids come
from the SDK's own counter, so a name used twice gets ``name:1`` as it would on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepline._protocol.hashing import StepIdCounter
from stepline._replay.journal import Journal, RecordedStep

#: ``(name, op, memo)`` of a done step; the op defaults to ``StepRun``.
Done = tuple[str, str, Any]
#: ``(name, op, status)`` of a step the run waits on.
Pending = tuple[str, str, str]

T0 = "2026-11-27T06:00:00Z"


def ran(name: str, value: Any) -> Done:
    """A ``step.run`` that returned ``value``."""
    return (name, "StepRun", {"data": value})


def slept(name: str) -> Done:
    """A sleep that ended."""
    return (name, "Sleep", None)


def sleeping(name: str) -> Pending:
    """A sleep the run is in."""
    return (name, "Sleep", "Sleeping")


def recorded(
    function_id: str,
    done: Sequence[Done],
    pending: Sequence[Pending] = (),
    *,
    status: str | None = None,
    output: Any = None,
    data: dict[str, Any] | None = None,
    times: Sequence[str] = (),
) -> Journal:
    """A run of ``function_id`` with these steps (``status``: Running while pending)."""
    counter = StepIdCounter()
    steps = []
    for n, (name, op, memo) in enumerate(done):
        hashed, _ = counter.next(name)
        ended = times[n] if n < len(times) else T0
        failed = isinstance(memo, dict) and "error" in memo
        steps.append(
            RecordedStep(
                hashed,
                name,
                op,
                "Failed" if failed else "Completed",
                memo=memo,
                attempts=1,
                started_at=T0,
                ended_at=ended,
            )
        )
    for name, op, state in pending:
        hashed, _ = counter.next(name)
        steps.append(RecordedStep(hashed, name, op, state, started_at=T0))
    app_id = function_id.split("-", 1)[0]
    return Journal(
        run_id=f"run-{function_id}",
        function_id=function_id,
        app_id=app_id,
        status=status or ("Running" if pending else "Completed"),
        events=[{"name": "t/go", "data": data or {}, "id": "e1", "ts": 0}],
        steps=tuple(steps),
        stack=tuple(s.id for s in steps if s.done),
        output=output,
        created_at=T0,
        started_at=T0,
    )
