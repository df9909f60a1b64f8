"""``serve()``: the endpoint the engine calls to run a Flask app's functions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import flask
from typing_extensions import Unpack
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from stepline import _errors
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._serving import bodies
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve
from stepline.embedded import EmbeddedEngine
from stepline.flask import _state

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["ADAPTER", "ENGINE_PATH", "FRAMEWORK", "serve"]

FRAMEWORK = "flask"
#: Where ``serve(..., engine=)`` mounts the embedded engine's REST API and dashboard.
ENGINE_PATH = "/stepline"
ADAPTER = _serve.Adapter("stepline.flask", FRAMEWORK, can_stream=False)


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

    def mount_engine(_serving: _serve.Serving, engine: EmbeddedEngine) -> None:
        assert isinstance(app, flask.Flask)
        mounts = {ENGINE_PATH: engine.wsgi_app()}
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]

    def mount(serving: _serve.Serving) -> CommHandler:
        handler, own = serving.handler, serving.engine
        shown = own if own is not None and own.expose_api else None  # its API is mounted
        blueprint, name = isinstance(app, flask.Blueprint), f"stepline:{serving.path}"

        def view() -> flask.Response:
            length = flask.request.headers.get("content-length")
            return _to_flask(serving.answer_sync(length, _reader(flask.request)))

        def before() -> None:
            request = flask.request
            # where Flask really serves it: a blueprint's prefix and the app's script root
            mounted = functools.partial(flask.url_for, ("." if blueprint else "") + name)
            serving.autosync(request.host_url, request.script_root + request.path, mounted)
            if shown is not None:  # the engine's own paths skip Flask: any other request says it
                shown.announce(handler.serve_origin or request.root_url, ENGINE_PATH)

        app.before_request(before)
        app.add_url_rule(
            serving.path,
            endpoint=name,
            view_func=view,
            methods=["GET", "POST", "PUT"],
        )
        if isinstance(app, flask.Flask):
            state = _state.AppState(client, list(functions), own, handler)
            app.extensions.setdefault(_state.EXTENSION, state)
            if shown is not None:
                shown.announce(handler.serve_origin, ENGINE_PATH)  # Flask has no startup hook
            if own is not None:  # outermost: the engine's own paths start it too
                app.wsgi_app = _starting(app.wsgi_app, own)  # type: ignore[method-assign,assignment]
        return handler

    return _serve.serve(
        ADAPTER,
        client,
        functions,
        options,
        mount=mount,
        app=app,
        engine=engine,
        database=database,
        mount_engine=mount_engine,
    )


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


def _reader(request: flask.Request) -> Callable[[int], CommRequest]:
    def read(limit: int) -> CommRequest:
        # ``request.stream`` ends at Content-Length, or (chunked, no length) where the
        # server says the input ends; read past ``limit`` at most by a chunk: the handler
        # answers 413
        return CommRequest.build(
            method=request.method,
            url=request.url,
            headers=request.headers.items(),
            body=bodies.read_sync(request.stream.read, limit),
            query=request.args.to_dict(),
        )

    return read


def _to_flask(response: CommResponse) -> flask.Response:
    return flask.Response(response.body, status=response.status, headers=response.headers)
