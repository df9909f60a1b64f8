"""What the engine refuses, as errors the API and ``stepline.testing`` map to answers."""

from __future__ import annotations


class NotFoundError(LookupError):
    """A run, event or function that does not exist (answered with 404)."""


class SkippedError(RuntimeError):
    """A start that flow control turned away (rate limit, singleton; answered with 409)."""

    def __init__(self, message: str, event_id: str) -> None:
        super().__init__(message)
        self.event_id = event_id


class EngineStopped(RuntimeError):
    """A call from another thread reached an engine that is not running (or stopped under it)."""


class QueryTimeoutError(RuntimeError):
    """A list query the database stopped at its time limit (answered with 503)."""
