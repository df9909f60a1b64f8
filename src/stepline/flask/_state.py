"""What ``serve`` and the extension keep per app, and ``current_client()`` reading it."""

from __future__ import annotations

import dataclasses

import flask

from stepline._client import Client
from stepline._comm import CommHandler
from stepline._definition.function import Function
from stepline.embedded import EmbeddedEngine

__all__ = ["EXTENSION", "AppState", "current_client", "state_of"]

#: The key of the extension's per-app state in ``app.extensions``.
EXTENSION = "stepline"


@dataclasses.dataclass(eq=False)
class AppState:
    """What ``serve`` and the extension keep per app, in ``app.extensions["stepline"]``.

    Attributes:
        client: the app's client (the extension makes it from ``app.config``).
        functions: the functions served.
        engine: the in-process engine (``engine="embedded"``), else None.
        handler: the handler answering the engine at ``/api/inngest``.
    """

    client: Client
    functions: list[Function]
    engine: EmbeddedEngine | None = None
    handler: CommHandler | None = None

    def close(self) -> None:
        """Stop the embedded engine and close the client's connections (at exit)."""
        if self.engine is not None:
            self.engine.stop()
        self.client.close()


def current_client() -> Client:
    """The current Flask app's Stepline client (needs an app or request context)."""
    return state_of(flask.current_app).client


def state_of(app: flask.Flask) -> AppState:
    state = app.extensions.get(EXTENSION)
    if not isinstance(state, AppState):
        raise RuntimeError(f"Stepline is not initialised on app {app.name!r}: call init_app(app)")
    return state
