"""``serve()``: the handler the engine calls (or the embedded engine's mount), and ``shutdown``."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import tornado.web
from typing_extensions import Unpack

from stepline import _errors, embedded
from stepline._comm import CommHandler
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve
from stepline.tornado import _conf, _views

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["ADAPTER", "FRAMEWORK", "serve", "shutdown"]

FRAMEWORK = "tornado"
ADAPTER = _serve.Adapter("stepline.tornado", FRAMEWORK)


def serve(
    app: tornado.web.Application,
    client: Client,
    functions: Sequence[Function],
    *,
    engine: Literal["embedded"] | embedded.EmbeddedEngine | None = None,
    database: str | None = None,
    engine_path: str | None = "/stepline",
    **options: Unpack[_serve_options.ServeOptions],
) -> CommHandler:
    """Add one handler for GET, PUT and POST at the serve path (default ``/api/inngest``).

    Requests are handled on the IOLoop: async functions run on it, sync functions on the
    handler's thread pool (``thread_pool_max_workers=0`` runs them inline, blocking the
    loop). With ``streaming="force"`` a POST answers 201 at once and keeps the connection
    alive until the result is written.

    The client goes to ``app.settings["stepline_client"]`` (unless one is there) for
    handlers to share (``ClientMixin``); ``await shutdown(app)`` closes it.

    ``options`` are the adapters' ``ServeOptions`` (``serve_origin``, ``serve_path``,
    ``streaming``, ``thread_pool_max_workers``).

    Args:
        engine: ``"embedded"`` (or your own ``EmbeddedEngine``) runs the engine on a
            background thread of this process, on SQLite, calling the functions
            in-process: the serve path is then not mounted (nothing calls it). The engine
            starts at the process's first request (or on the client's first use, or
            with ``stepline.embedded.start_all()`` before the IOLoop starts), is
            ``app.settings["stepline_engine"]``, and stops in ``shutdown``.
        database: the embedded engine's database (default ``STEPLINE_DATABASE_URL`` or
            ``.stepline/embedded.db``).
        engine_path: where the embedded engine's REST API and dashboard are mounted, for
            a dev-mode client or an engine built with ``expose_api=True``; None: nowhere.
            Their URL is logged once (here with ``serve_origin``, else at the first request).

    Raises:
        ConfigError: an option is invalid, a function belongs to another app, or
            ``serve`` was already called on ``app``.
    """
    if engine_path is not None and not engine_path.startswith("/"):
        raise _errors.ConfigError(f"engine_path must start with '/', got {engine_path!r}")
    mount_at = None if engine_path is None else engine_path.rstrip("/")

    def mount_engine(serving: _serve.Serving, engine: embedded.EmbeddedEngine) -> None:
        assert mount_at is not None
        kwargs = {"engine": engine, "mount": mount_at}
        app.add_handlers(r".*", [(re.escape(mount_at) + r"(?:/.*)?", _views.EngineHandler, kwargs)])
        # Tornado has no startup hook: serve() is startup, else the first request says it
        origin = serving.handler.serve_origin
        engine.announce(origin, mount_at)
        app.add_transform(_views.announcing(engine, mount_at, origin))

    def mount(serving: _serve.Serving) -> CommHandler:
        handler, own = serving.handler, serving.engine
        if own is None:  # with an embedded engine nothing calls the serve path
            rule = (re.escape(serving.path), _views.SteplineHandler, {"serving": serving})
            app.add_handlers(r".*", [rule])
        app.add_transform(_views.registering(serving))
        if own is not None:
            app.add_transform(_views.starting(own))
            app.settings[_conf.ENGINE_SETTING] = own
        app.settings.setdefault(_conf.CLIENT_SETTING, client)
        app.settings.setdefault(_conf.SERVED, []).append(_Served(handler, client, own))
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
        mount_engine=None if mount_at is None else mount_engine,
    )


async def shutdown(app: tornado.web.Application) -> None:
    """Undo ``serve``: stop embedded engines, release thread pools, close clients.

    Call it once the HTTP server has stopped (Tornado has no shutdown hook of its own).
    """
    for served in app.settings.pop(_conf.SERVED, []):
        if served.engine is not None:
            await asyncio.to_thread(served.engine.stop)  # joins the engine thread
        served.handler.close()
        await served.client.aclose()


@dataclasses.dataclass(frozen=True)
class _Served:
    handler: CommHandler
    client: Client
    engine: embedded.EmbeddedEngine | None
