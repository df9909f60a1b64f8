"""What the engine refuses, as errors the API and ``stepline.testing`` map to answers."""

from __future__ import annotations


class NotFoundError(LookupError):
    """A run, event or function that does not exist (answered with 404)."""


class SkippedError(RuntimeError):
    """A start that flow control turned away (rate limit, singleton; answered with 409)."""

    def __init__(self, message: str, event_id: str) -> None:
        super().__init__(message)
        self.event_id = event_id


class EndpointOnlyError(RuntimeError):
    """A start of a durable endpoint's function other than its endpoint's (answered with 400).

    Its run's trigger data is the request the endpoint recorded, and its caller is the
    principal the endpoint's inline start recorded: no other start may supply either.
    """


class EngineStopped(RuntimeError):
    """A call from another thread reached an engine that is not running (or stopped under it)."""


class QueryTimeoutError(RuntimeError):
    """A list query the database stopped at its time limit (answered with 503)."""
