"""The ``Stepline`` extension: one client per app from ``app.config``, functions served."""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import flask

from stepline import _errors
from stepline._client import Client
from stepline._definition import function as _function
from stepline.embedded import EmbeddedEngine
from stepline.flask import _conf, _serve, _state

if TYPE_CHECKING:
    from stepline._definition.function import Function, Handler

__all__ = ["ENGINES", "Stepline"]

ENGINES = ("external", "embedded")
logger = logging.getLogger("stepline.flask")


class Stepline:
    """The Flask extension: one client per app from ``app.config``, functions served.

    ``init_app(app)`` (or ``Stepline(app)``) makes the app's client, serves the functions
    and stores an ``AppState`` in ``app.extensions["stepline"]``; views reach the client
    with ``ext.client`` or ``stepline.flask.current_client()``. The client is closed (and
    the embedded engine stopped) when the process exits, never per request.

    Config keys (absent ones fall back to ``STEPLINE_*``/``INNGEST_*`` environment
    variables, as for ``Client``):

    - ``STEPLINE_APP_ID``: the app id (default: the one given here or the functions').
    - ``STEPLINE_DEV`` (True, or the dev server's URL) or ``STEPLINE_IS_PRODUCTION``.
    - ``STEPLINE_SIGNING_KEY``, ``STEPLINE_SIGNING_KEY_FALLBACK``, ``STEPLINE_EVENT_KEY``.
    - ``STEPLINE_BASE_URL`` (both APIs), ``STEPLINE_API_BASE_URL``,
      ``STEPLINE_EVENT_API_BASE_URL``, ``STEPLINE_ENV``, ``STEPLINE_SERVE_ORIGIN``,
      ``STEPLINE_SERVE_PATH``, ``STEPLINE_APP_VERSION``.
    - ``STEPLINE_ENGINE``: ``"external"`` (default; functions are served at
      ``/api/inngest`` for an engine elsewhere) or ``"embedded"`` (the engine runs in
      this process on ``STEPLINE_DATABASE_URL``, with ``STEPLINE_ENGINE_OPTIONS``
      such as ``{"poll_interval": 0.1}``; its API and dashboard are mounted at
      ``/stepline`` for a dev-mode client, or with ``STEPLINE_EXPOSE_API = True``).
      The functions are served at ``/api/inngest`` either way.

    Args:
        app: the app, when there is no factory.
        client: use this client instead of making one from the config (its settings win;
            ``STEPLINE_ENGINE`` and the engine keys still apply).
        functions: functions declared elsewhere, served too.
        app_id: the app id ``ext.function`` declares functions under.

    Example:
        >>> ext = stepline.flask.Stepline(app_id="shop")
        >>> @ext.function(id="welcome", trigger=stepline.TriggerEvent(event="user/signup"))
        ... def welcome(ctx: stepline.SyncContext) -> None: ...
        >>> def create_app() -> flask.Flask:
        ...     app = flask.Flask(__name__)
        ...     app.config["STEPLINE_ENGINE"] = "embedded"
        ...     ext.init_app(app)
        ...     return app
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        client: Client | None = None,
        functions: Sequence[Function] = (),
        app_id: str | None = None,
    ) -> None:
        self.app = app
        self.functions = list(functions)
        self.app_id = client.app_id if client is not None else app_id
        self._client = client
        self._shared_engine: EmbeddedEngine | None = None
        if app is not None:
            self.init_app(app)

    def function(self, *, id: str, **options: Any) -> Callable[[Handler], Function]:
        """Declare a function served by every app this extension is on.

        Takes ``Client.function``'s arguments. Functions belong to an app id, not to a
        client, so each app's client runs them.
        """
        if not self.app_id:
            raise _errors.ConfigError(
                "Stepline(app_id=...) is needed to declare functions with ext.function"
            )
        # a function needs its app id only: no client, no environment, no connections
        decorate = _function.declare(self.app_id, id=id, **options)

        def register(handler: Handler) -> Function:
            function = decorate(handler)
            self.functions.append(function)
            return function

        return register

    def init_app(self, app: flask.Flask) -> None:
        """Make the app's client from ``app.config`` and serve the functions on ``app``."""
        if _state.EXTENSION in app.extensions:
            raise RuntimeError(f"Stepline is already set up on app {app.name!r}")
        config = app.config
        kind = str(config.get("STEPLINE_ENGINE") or "external").lower()
        if kind not in ENGINES:
            raise _errors.ConfigError(
                f"STEPLINE_ENGINE must be one of {', '.join(ENGINES)}, not {kind!r}"
            )
        if not self.functions:
            raise _errors.ConfigError("Stepline has no functions to serve")
        client = self._client or Client(**_conf.client_options(config, self._app_id(config)))
        engine = self._engine(client, config) if kind == "embedded" else None
        _serve.serve(app, client, self.functions, engine=engine)
        _STATES.add(_state.state_of(app))

    def _app_id(self, config: Mapping[str, Any]) -> str:
        owners = {fn.app_id for fn in self.functions}
        wanted = config.get("STEPLINE_APP_ID") or self.app_id or next(iter(owners), None)
        if not wanted:
            raise _errors.ConfigError("set STEPLINE_APP_ID in app.config (or Stepline(app_id=))")
        strays = sorted(owners - {wanted})
        if strays:
            raise _errors.ConfigError(
                f"STEPLINE_APP_ID is {wanted!r} but functions belong to {', '.join(strays)}"
            )
        return str(wanted)

    def _engine(self, client: Client, config: Mapping[str, Any]) -> EmbeddedEngine:
        if self._client is not None and self._shared_engine is not None:
            return self._shared_engine  # one given client is routed to one engine
        engine = EmbeddedEngine(
            client,
            self.functions,
            database=config.get("STEPLINE_DATABASE_URL"),
            expose_api=bool(config.get("STEPLINE_EXPOSE_API", False)),
            **dict(config.get("STEPLINE_ENGINE_OPTIONS") or {}),
        )
        if self._client is not None:
            self._shared_engine = engine
        return engine

    def state(self, app: flask.Flask | None = None) -> _state.AppState:
        """The state of ``app`` (default: the current app, else the one given at creation)."""
        if app is None:
            app = flask.current_app if flask.has_app_context() else self.app
        if app is None:
            raise RuntimeError("no Flask app: pass app=, or call this inside an app context")
        return _state.state_of(app)

    @property
    def client(self) -> Client:
        """The current app's client (inside a request or app context)."""
        return self.state().client


_STATES: weakref.WeakSet[_state.AppState] = weakref.WeakSet()


def _close_all() -> None:
    for state in list(_STATES):
        try:
            state.close()
        except Exception:  # at exit: one failing app must not keep the others open
            logger.exception("closing Stepline for an app failed")


atexit.register(_close_all)
