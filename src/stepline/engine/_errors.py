"""What the engine refuses, as errors the API and ``stepline.testing`` map to answers."""

from __future__ import annotations

from collections.abc import Mapping

from stepline.engine._flow.rules import RegistrationError


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


class RegistrationRefusedError(RegistrationError):
    """A valid registration the engine refuses; ``status`` is the HTTP answer (403, 409)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FunctionTakenError(RegistrationRefusedError):
    """A registration naming function ids another app owns (answered with 409; the store
    finds them as it writes the app's functions)."""

    def __init__(self, app_id: str, taken: Mapping[str, str]) -> None:
        owned = ", ".join(f"{fid!r} (app {owner!r})" for fid, owner in sorted(taken.items()))
        super().__init__(
            f"app {app_id!r} cannot register function ids that belong to another app: "
            f"{owned}. A function id is bound to the app that registered it first; give "
            "this app its own ids (they are prefixed with the app id), or remove the "
            "functions from the other app and sync it first",
            409,
        )
        self.taken = dict(taken)
