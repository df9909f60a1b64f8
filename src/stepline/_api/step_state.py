"""A step's state in words, as every surface that shows a run's steps reads it.

The CLI (``stepline runs show``) and the Django admin word a step through these two
functions; the dashboard words it the same way in its JavaScript, from the REST API's
step view (``kind``, ``status``, ``attempts``, ``max_attempts``, ``next_retry_at``).
Pure: no clock, no I/O.
"""

from __future__ import annotations

import datetime as dt

#: The ops that report how a ``step.run`` went (or that it is planned), not what it is:
#: a step stored with one of them is a ``StepRun`` to whoever reads its timeline.
_RUN_REPORTS = frozenset({"StepError", "StepFailed", "StepPlanned"})
#: The status of a step whose next attempt has not started (every other status says enough).
_PLANNED = "Planned"


def kind(op: str) -> str:
    """The kind of step an op names, whatever answer ended it.

    A ``step.run`` whose attempt failed is stored with the op that reported the failure
    (``StepError``, ``StepFailed``), and one run in parallel with ``StepPlanned``; all of
    them are ``StepRun`` steps. Other ops (``Sleep``, ``WaitForEvent``...) are their own.

    Args:
        op: the step's op as the REST API shows it.

    Returns:
        The op to show as the step's kind.
    """
    return "StepRun" if op in _RUN_REPORTS else op


def describe(
    status: str,
    *,
    attempts: int,
    max_attempts: int | None = None,
    next_retry_at: dt.datetime | None = None,
    tz: dt.tzinfo | None = None,
) -> str:
    """A step's state as a person reads it: its status, or when it is retried.

    A planned step that has already failed an attempt is waiting to be retried:
    ``Retrying at 14:03:12 (attempt 2 of 4)``. Every other step shows its status
    (``Completed``, ``Failed``, ``Sleeping``...).

    Args:
        status: the step's status (``Planned``, ``Failed``...).
        attempts: how many attempts of the step ended (failed, for a planned step).
        max_attempts: how many attempts the function allows (its retries plus one);
            None when not known (the attempt number is shown alone).
        next_retry_at: when the next attempt is due; None when not known.
        tz: the time zone to show that time in; None: the machine's local one.

    Returns:
        One line.
    """
    if status != _PLANNED or attempts < 1:
        return status
    number = f"attempt {attempts + 1}" + (f" of {max_attempts}" if max_attempts else "")
    if next_retry_at is None:
        return f"Retrying ({number})"
    return f"Retrying at {next_retry_at.astimezone(tz):%H:%M:%S} ({number})"
