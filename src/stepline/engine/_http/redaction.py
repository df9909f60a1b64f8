"""A viewer's answers: every payload replaced by a marker.

A ``viewer`` reads runs, events, approvals and bulk actions without what flowed through
them: a route whose row in ``stepline._serving.access.ENGINE`` says ``payloads`` is answered
to a viewer with the value of every payload field replaced by ``{"redacted": "viewer"}``,
at any depth below the answer's ``data`` envelope:

- ``data`` (an event's data; the envelope's own ``data`` is not one), ``user`` (an
  event's user object), ``events`` (a run's trigger events, whole), ``output``, ``input``,
  ``result``, ``args``, ``arguments``, ``report`` (a deploy check's), ``filter`` (a bulk
  action's, which may quote payload values), ``memo``;
- ``error``: an object keeps its ``name`` (the error's class) beside the marker, its
  message and stack go; an error given as text is replaced whole.

Pure: the gate applies it to a JSON answer's parsed body (``gate.guarded``); an answer
that is not JSON (a stream) on such a route is refused to a viewer instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from stepline import _cel

__all__ = ["MARKER", "PAYLOAD_KEYS", "PAYLOAD_VARIABLES", "reads_payloads", "redact"]

#: The variables of a search expression that are payloads (a run query's trigger events
#: and output; an event search's ``event``): a viewer's search may not read them, or
#: whether it matches would tell the payload a character at a time.
PAYLOAD_VARIABLES = frozenset({"event", "events", "output"})

#: What a payload becomes.
MARKER: dict[str, str] = {"redacted": "viewer"}
#: The fields whose values are payloads (``error`` is handled apart).
PAYLOAD_KEYS = frozenset(
    {
        "data",
        "user",
        "events",
        "output",
        "input",
        "result",
        "args",
        "arguments",
        "report",
        "filter",
        "memo",
    }
)


def redact(answer: Any) -> Any:
    """``answer`` (a JSON answer's body) with every payload replaced by ``MARKER``."""
    if isinstance(answer, dict) and "data" in answer:  # the envelope: {"data": ..., ...}
        return {k: (_walk(v) if k == "data" else _walk_field(k, v)) for k, v in answer.items()}
    return _walk(answer)


def reads_payloads(text: str, variables: Collection[str]) -> bool:
    """Whether an expression over ``variables`` reads one of ``PAYLOAD_VARIABLES``.

    An expression that does not compile reads nothing (its route answers 400 for it).
    """
    allowed = [name for name in variables if name not in PAYLOAD_VARIABLES]
    try:
        _cel.check(text, allowed=allowed)
    except _cel.ExpressionError as exc:
        return "unknown variable" in exc.reason and any(
            repr(name) in exc.reason for name in PAYLOAD_VARIABLES
        )
    return False


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _walk_field(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item) for item in value]
    return value


def _walk_field(key: str, value: Any) -> Any:
    if key in PAYLOAD_KEYS:
        return None if value is None else dict(MARKER)
    if key == "error":
        return _error(value)
    return _walk(value)


def _error(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        name = value.get("name")
        return {"name": name, **MARKER} if isinstance(name, str) else dict(MARKER)
    return dict(MARKER)
