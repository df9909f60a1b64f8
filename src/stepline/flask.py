"""Flask: serve functions, mount the run routes, or let the ``Stepline`` extension do both.

Example:
    >>> app = flask.Flask(__name__)
    >>> stepline.flask.serve(app, client, [welcome])
    >>> app.register_blueprint(
    ...     stepline.flask.runs_blueprint(client, [welcome], authorize=is_staff),
    ...     url_prefix="/api",
    ... )

With an app factory, the extension reads ``app.config`` (``STEPLINE_APP_ID``,
``STEPLINE_SIGNING_KEY``, ``STEPLINE_ENGINE = "embedded"``...) and makes one client per
app; see ``Stepline``.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from stepline import _errors, _webkit
from stepline._client import Client
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline.embedded import EmbeddedEngine

if TYPE_CHECKING:
    from stepline._function import Function, Handler

__all__ = ["AppState", "Stepline", "current_client", "runs_blueprint", "serve"]

FRAMEWORK = "flask"
#: The key of the extension's per-app state in ``app.extensions``.
EXTENSION = "stepline"
ENGINES = ("external", "embedded")
#: Where ``serve(..., engine=)`` mounts the embedded engine's REST API and dashboard.
ENGINE_PATH = "/stepline"
logger = logging.getLogger("stepline.flask")


def serve(
    app: flask.Flask | flask.Blueprint,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
    engine: Literal["embedded"] | EmbeddedEngine | None = None,
    database: str | None = None,
) -> CommHandler:
    """Register GET, PUT and POST at the serve path (default ``/api/inngest``).

    Sync and async functions both work; async ones run on a private event loop, so
    Flask's async extra is not needed. Streaming needs an async server: asking for
    it here raises ``ConfigError``. On an app (not a blueprint), the client is kept in
    ``app.extensions["stepline"]`` for ``current_client()``.

    Args:
        engine: ``"embedded"`` (or your own ``EmbeddedEngine``) runs the engine in this
            process on SQLite (it starts on first use and stops at exit); its API and
            dashboard are mounted at ``/stepline`` for a dev-mode client (or an engine
            made with ``expose_api=True``). Needs the app, not a blueprint.
        database: the embedded engine's database (default ``.stepline/embedded.db``).
    """
    if engine is not None and not isinstance(app, flask.Flask):
        raise _errors.ConfigError("stepline.flask.serve(engine=...) needs the Flask app")
    own = _embedded(client, functions, engine, database)
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
        can_stream=False,
    )
    path = handler.route_path

    def view() -> flask.Response:
        return _to_flask(handler.handle_sync(_from_flask(flask.request)))

    app.add_url_rule(
        path, endpoint=f"stepline:{path}", view_func=view, methods=["GET", "POST", "PUT"]
    )
    if isinstance(app, flask.Flask):
        app.extensions.setdefault(EXTENSION, AppState(client, list(functions), own, handler))
        if own is not None and own.expose_api:
            mounts = {ENGINE_PATH: own.wsgi_app()}
            app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]
        elif own is not None:
            logger.info("embedded engine API not mounted: production client without expose_api")
    return handler


def _embedded(
    client: Client,
    functions: Sequence[Function],
    engine: Literal["embedded"] | EmbeddedEngine | None,
    database: str | None,
) -> EmbeddedEngine | None:
    if engine is None or isinstance(engine, EmbeddedEngine):
        if engine is not None and engine.client is not client:
            raise _errors.ConfigError("serve: the EmbeddedEngine belongs to another client")
        if engine is not None and database:
            raise _errors.ConfigError("serve: database goes to your own EmbeddedEngine")
        return engine
    if engine != "embedded":
        raise _errors.ConfigError(f"engine: want 'embedded' or an EmbeddedEngine, not {engine!r}")
    return EmbeddedEngine(client, functions, database=database)


def _from_flask(request: flask.Request) -> CommRequest:
    return CommRequest.build(
        method=request.method,
        url=request.url,
        headers=request.headers.items(),
        body=request.get_data(cache=False),
        query=request.args.to_dict(),
    )


def _to_flask(response: CommResponse) -> flask.Response:
    return flask.Response(response.body, status=response.status, headers=response.headers)


# -- the web-app kit's run routes ------------------------------------------------------------


def runs_blueprint(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: _webkit.Authorize,
    inputs: Mapping[Function, Any] | None = None,
    name: str = "stepline_runs",
    url_prefix: str = "",
) -> flask.Blueprint:
    """A blueprint answering the run routes of ``stepline.web`` for ``functions``.

    ``POST /runs`` starts a run, ``GET /runs/<id>`` shows it, ``POST /runs/<id>/cancel``
    cancels it, ``GET /runs/<id>/result?wait=`` waits for it and ``GET /runs/<id>/events``
    streams its progress as Server-Sent Events. Every request goes to ``authorize`` first
    (with the ``flask.Request`` as ``access.request``); pass ``stepline.web.allow_all`` to
    make the routes public on purpose. Serve the app threaded: an events stream holds
    its thread until the run ends.

    Args:
        client: the app's client.
        functions: the functions that may be started; runs of others answer 404.
        authorize: the access hook (sync; Flask views are sync).
        inputs: per function, a pydantic model the start's ``data`` must match (422).
        name: the blueprint's name (register two with different names).
        url_prefix: where the routes go (``register_blueprint(url_prefix=)`` works too).
    """
    routes = _webkit.RunRoutes(client, functions, authorize=authorize, inputs=inputs)
    blueprint = flask.Blueprint(name, __name__, url_prefix=url_prefix or None)

    def view(rest: str = "") -> flask.Response:
        # the request itself, not the proxy: authorize may keep it past the request
        request: flask.Request = flask.request._get_current_object()  # type: ignore[attr-defined]
        return _from_web(routes, routes.handle_sync(_to_web(request, rest)))

    methods = ["GET", "POST"]
    blueprint.add_url_rule("/runs", endpoint="runs", view_func=view, methods=methods)
    blueprint.add_url_rule("/runs/<path:rest>", endpoint="run", view_func=view, methods=methods)
    return blueprint


def _to_web(request: flask.Request, rest: str) -> _webkit.WebRequest:
    path = f"/runs/{rest}" if rest else "/runs"
    mount = request.script_root + request.path[: len(request.path) - len(path)]
    return _webkit.WebRequest(
        method=request.method,
        path=path,
        query=request.args.to_dict(),
        body=request.stream.read(_webkit.MAX_BODY + 1),  # the kit answers 413 past the limit
        native=request,
        mount=mount,
    )


def _from_web(routes: _webkit.RunRoutes, response: _webkit.WebResponse) -> flask.Response:
    body = response.body if response.stream is None else routes.chunks_sync(response)
    return flask.Response(body, status=response.status, headers=response.headers)


# -- the extension ------------------------------------------------------------------------------


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
        self._declarer = client
        self._shared_engine: EmbeddedEngine | None = None
        if app is not None:
            self.init_app(app)

    def function(self, *, id: str, **options: Any) -> Callable[[Handler], Function]:
        """Declare a function served by every app this extension is on.

        Takes ``Client.function``'s arguments. Functions belong to an app id, not to a
        client, so each app's client runs them.
        """
        if self._declarer is None:
            if not self.app_id:
                raise _errors.ConfigError(
                    "Stepline(app_id=...) is needed to declare functions with ext.function"
                )
            # only an app id is read from it: no environment, no connections
            self._declarer = Client(self.app_id, is_production=False, environ={})
        decorate = self._declarer.function(id=id, **options)

        def register(handler: Handler) -> Function:
            function = decorate(handler)
            self.functions.append(function)
            return function

        return register

    def init_app(self, app: flask.Flask) -> None:
        """Make the app's client from ``app.config`` and serve the functions on ``app``."""
        if EXTENSION in app.extensions:
            raise RuntimeError(f"Stepline is already set up on app {app.name!r}")
        config = app.config
        kind = str(config.get("STEPLINE_ENGINE") or "external").lower()
        if kind not in ENGINES:
            raise _errors.ConfigError(
                f"STEPLINE_ENGINE must be one of {', '.join(ENGINES)}, not {kind!r}"
            )
        if not self.functions:
            raise _errors.ConfigError("Stepline has no functions to serve")
        client = self._client or Client(**_client_options(config, self._app_id(config)))
        engine = self._engine(client, config) if kind == "embedded" else None
        serve(app, client, self.functions, engine=engine)
        _STATES.add(_state(app))

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

    def state(self, app: flask.Flask | None = None) -> AppState:
        """The state of ``app`` (default: the current app, else the one given at creation)."""
        if app is None:
            app = flask.current_app if flask.has_app_context() else self.app
        if app is None:
            raise RuntimeError("no Flask app: pass app=, or call this inside an app context")
        return _state(app)

    @property
    def client(self) -> Client:
        """The current app's client (inside a request or app context)."""
        return self.state().client


def current_client() -> Client:
    """The current Flask app's Stepline client (needs an app or request context)."""
    return _state(flask.current_app).client


def _state(app: flask.Flask) -> AppState:
    state = app.extensions.get(EXTENSION)
    if not isinstance(state, AppState):
        raise RuntimeError(f"Stepline is not initialised on app {app.name!r}: call init_app(app)")
    return state


_CLIENT_KEYS = {
    "signing_key": "STEPLINE_SIGNING_KEY",
    "signing_key_fallback": "STEPLINE_SIGNING_KEY_FALLBACK",
    "event_key": "STEPLINE_EVENT_KEY",
    "env": "STEPLINE_ENV",
    "serve_origin": "STEPLINE_SERVE_ORIGIN",
    "serve_path": "STEPLINE_SERVE_PATH",
    "app_version": "STEPLINE_APP_VERSION",
}


def _client_options(config: Mapping[str, Any], app_id: str) -> dict[str, Any]:
    """``Client`` arguments from ``app.config``; absent keys stay None (the environment's)."""
    options: dict[str, Any] = {"app_id": app_id, "is_production": _is_production(config)}
    for argument, key in _CLIENT_KEYS.items():
        value = config.get(key)
        options[argument] = None if value is None else str(value)
    dev = config.get("STEPLINE_DEV")
    dev_url = dev if isinstance(dev, str) and "://" in dev else None
    base = config.get("STEPLINE_BASE_URL") or dev_url
    options["api_base_url"] = config.get("STEPLINE_API_BASE_URL") or base
    options["event_api_base_url"] = config.get("STEPLINE_EVENT_API_BASE_URL") or base
    return options


def _is_production(config: Mapping[str, Any]) -> bool | None:
    from_dev = _flag(config.get("STEPLINE_DEV"))
    production = _flag(config.get("STEPLINE_IS_PRODUCTION"))
    if production is not None and from_dev is not None and production == from_dev:
        raise _errors.ConfigError("STEPLINE_DEV and STEPLINE_IS_PRODUCTION disagree")
    if production is not None:
        return production
    return None if from_dev is None else not from_dev


def _flag(value: object) -> bool | None:
    """A config switch: None or blank is unset; "0"/"false"/"no" are False (a URL is True)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return bool(value)


_STATES: weakref.WeakSet[AppState] = weakref.WeakSet()


def _close_all() -> None:
    for state in list(_STATES):
        try:
            state.close()
        except Exception:  # at exit: one failing app must not keep the others open
            logger.exception("closing Stepline for an app failed")


atexit.register(_close_all)
