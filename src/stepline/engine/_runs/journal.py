"""A run as its journal: the ``stepline.run/1`` document of ``stepline._replay.journal``.

What ``GET /v1/runs/{id}/export`` answers and ``TestEnv.export`` returns: the trigger
events, every step in recorded order with its memo, the completion order, the run's output
(its stored text parsed, as ``GET /v1/runs/{id}`` shows it) and the app version it started
on. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepline._json import loads as json_loads
from stepline._protocol import durations
from stepline._replay import journal as _journal
from stepline._replay.journal import Journal, RecordedStep
from stepline.engine._model import Run, StepRecord, stack_of

__all__ = ["journal_of"]


def journal_of(run: Run, steps: Sequence[StepRecord], *, exported_at: float) -> Journal:
    """The journal of ``run`` and its ``steps`` as one read saw them (pure); the
    completion order is the steps' (``stack_of``)."""
    stack = stack_of(steps)
    recorded = [
        RecordedStep(
            id=s.step_id,
            name=s.name,
            op=s.op,
            status=s.status.value,
            memo=s.memo if s.status.done else None,
            mode=s.mode,
            attempts=s.attempts,
            started_at=_time(s.started_at),
            ended_at=_time(s.ended_at),
        )
        for s in steps
    ]
    return Journal(
        run_id=run.run_id,
        function_id=run.function_id,
        app_id=run.app_id,
        status=run.status.value,
        events=list(run.events),
        steps=tuple(_journal.steps_in_order(recorded, stack)),
        stack=tuple(stack),
        app_version=run.app_version,
        output=_stored(run.output),
        created_at=_time(run.created_at),
        started_at=_time(run.started_at),
        ended_at=_time(run.ended_at),
        exported_at=_time(exported_at),
    )


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return durations.format_epoch(seconds)


def _stored(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json_loads(text)
    except ValueError:
        return text  # not JSON (an SDK answered with plain text): as it came
