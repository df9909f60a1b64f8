"""``serve()``: the endpoint the engine calls to run a Flask app's functions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import flask
from typing_extensions import Unpack
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from stepline import _errors
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._serving import autosync, bodies, engine_option
from stepline._serving import options as _serve_options
from stepline.embedded import EmbeddedEngine
from stepline.flask import _state

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["ENGINE_PATH", "FRAMEWORK", "serve"]

FRAMEWORK = "flask"
#: Where ``serve(..., engine=)`` mounts the embedded engine's REST API and dashboard.
ENGINE_PATH = "/stepline"
logger = logging.getLogger("stepline.flask")


def serve(
    app: flask.Flask | flask.Blueprint,
    client: Client,
    functions: Sequence[Function],
    *,
    engine: Literal["embedded"] | EmbeddedEngine | None = None,
    database: str | None = None,
    **options: Unpack[_serve_options.ServeOptions],
) -> CommHandler:
    """Register GET, PUT and POST at the serve path (default ``/api/inngest``).

    Sync and async functions both work; async ones run on a private event loop, so
    Flask's async extra is not needed. Streaming needs an async server: asking for
    it here raises ``ConfigError``. On an app (not a blueprint), the client is kept in
    ``app.extensions["stepline"]`` for ``current_client()``.

    ``options`` are the adapters' ``ServeOptions`` (``serve_origin``, ``serve_path``,
    ``streaming``, ``thread_pool_max_workers``).

    Args:
        engine: ``"embedded"`` (or your own ``EmbeddedEngine``) runs the engine in this
            process on SQLite: it starts at the process's first request of any kind (or
            from a server hook calling ``stepline.embedded.start_all()``, or on the
            client's first use), and stops at exit; its API and
            dashboard are mounted at ``/stepline`` for a dev-mode client (or an engine
            made with ``expose_api=True``), and their URL logged once (at ``serve`` with
            ``serve_origin``, else at the first request). Needs the app, not a blueprint.
        database: the embedded engine's database (default ``.stepline/embedded.db``).

    Raises:
        ConfigError: an invalid option, or ``serve`` was already called on ``app``.
    """
    if engine is not None and not isinstance(app, flask.Flask):
        raise _errors.ConfigError("stepline.flask.serve(engine=...) needs the Flask app")
    own = engine_option.resolve(client, functions, engine, database)
    handler = _serve_options.build_handler(client, functions, FRAMEWORK, options, can_stream=False)
    _serve_options.check_unserved("stepline.flask.serve", app, handler.route_path, client.app_id)
    path = handler.route_path

    def view() -> flask.Response:
        declared = bodies.declared_too_large(
            flask.request.headers.get("content-length"), handler.max_body_bytes
        )
        if declared is not None:  # refused unread
            return _to_flask(bodies.too_large(handler, declared))
        return _to_flask(handler.handle_sync(_from_flask(flask.request, handler.max_body_bytes)))

    _serve_options.mark_served(app, path, client.app_id)
    shown = own if own is not None and own.expose_api and isinstance(app, flask.Flask) else None

    def before() -> None:
        request = flask.request
        autosync.start(handler, request.host_url, embedded=own, path=request.path)
        if shown is not None:  # the engine's own paths skip Flask: any other request says it
            shown.announce(handler.serve_origin or request.root_url, ENGINE_PATH)

    app.before_request(before)
    app.add_url_rule(
        path, endpoint=f"stepline:{path}", view_func=view, methods=["GET", "POST", "PUT"]
    )
    if isinstance(app, flask.Flask):
        state = _state.AppState(client, list(functions), own, handler)
        app.extensions.setdefault(_state.EXTENSION, state)
        if shown is not None:
            mounts = {ENGINE_PATH: shown.wsgi_app()}
            app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]
            shown.announce(handler.serve_origin, ENGINE_PATH)  # Flask has no startup hook
        elif own is not None:
            logger.info("embedded engine API not mounted: production client without expose_api")
        if own is not None:  # outermost: the engine's own paths start it too
            app.wsgi_app = _starting(app.wsgi_app, own)  # type: ignore[method-assign,assignment]
    return handler


_WSGI = Callable[[dict[str, Any], Any], Iterable[bytes]]


def _starting(wsgi: _WSGI, engine: EmbeddedEngine) -> _WSGI:
    """``wsgi`` starting ``engine`` at the process's first request, whatever its path.

    A worker a process manager (re)spawned runs its engine from the first request on,
    not from the first use of the client: runs whose leases lapsed, and sleeps, crons and
    retries that fell due, resume without waiting for a Stepline call.
    """

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        engine.on_request()
        return wsgi(environ, start_response)

    return app


def _from_flask(request: flask.Request, limit: int) -> CommRequest:
    # ``request.stream`` ends at Content-Length, or (chunked, no length) where the server
    # says the input ends; read past ``limit`` at most by a chunk: the handler answers 413
    return CommRequest.build(
        method=request.method,
        url=request.url,
        headers=request.headers.items(),
        body=bodies.read_sync(request.stream.read, limit),
        query=request.args.to_dict(),
    )


def _to_flask(response: CommResponse) -> flask.Response:
    return flask.Response(response.body, status=response.status, headers=response.headers)
