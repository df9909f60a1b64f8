"""The serve ritual, written once: what every adapter's ``serve`` does besides its framework.

``serve`` takes one adapter's call through the framework-neutral steps, in one order:

1. resolve ``engine=`` (``engine_option``): an embedded engine routes the client to itself;
2. build the ``CommHandler`` from the serve options (``options.build_handler``);
3. refuse a second ``serve`` on one web app (same path, or same app id), then mark it;
4. mount the embedded engine's API through the adapter (``mount_engine``), or log that it
   is not mounted (a production client without ``expose_api``);
5. mount the serve path through the adapter (``mount``), whose views answer with
   ``Serving.answer_sync``/``answer_async`` (the body pre-check, then the handler) and
   whose request hook calls ``Serving.autosync`` (dev-mode registration).

An adapter keeps its two conversions (native request to ``CommRequest``, ``CommResponse``
to native response) and its mounting; the steps and their errors are the same everywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from stepline import _errors
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._serving import autosync, bodies, engine_option
from stepline._serving import options as _options

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function
    from stepline.embedded import EmbeddedEngine

__all__ = ["Adapter", "Serving", "serve"]

_T = TypeVar("_T")

#: The attribute ``serve`` leaves on an app or router: ``{serve path: app id}``. An
#: attribute, not a weak mapping: routers define ``__eq__`` and so are not hashable.
_SERVED = "_stepline_served"


@dataclasses.dataclass(frozen=True, slots=True)
class Adapter:
    """What an adapter tells the ritual about itself.

    Attributes:
        package: its import path (``"stepline.fastapi"``): errors name
            ``{package}.serve``, and its log lines go to the logger of that name.
        framework: the framework reported to the engine (``"fast_api"``).
        can_stream: False where a response cannot be streamed (WSGI, functions as a
            service): ``streaming="force"`` is then refused at ``serve``.
    """

    package: str
    framework: str
    can_stream: bool = True

    @property
    def caller(self) -> str:
        """The ``serve`` function, as error messages name it."""
        return f"{self.package}.serve"

    @property
    def logger(self) -> logging.Logger:
        """The adapter's logger (``stepline.fastapi``...)."""
        return logging.getLogger(self.package)


@dataclasses.dataclass(frozen=True, slots=True)
class Serving:
    """One ``serve`` call's endpoint: what the adapter's views and request hooks use.

    Attributes:
        handler: the ``CommHandler`` that answers the engine.
        engine: the embedded engine ``engine=`` asked for, or None (an engine elsewhere).
        in_process: an engine calls the functions in this process (``engine`` or one
            the adapter's own settings made): nothing to register with, no autosync.
    """

    handler: CommHandler
    engine: EmbeddedEngine | None = None
    in_process: bool = False

    @property
    def path(self) -> str:
        """The serve path (default ``/api/inngest``)."""
        return self.handler.route_path

    def refusal(self, content_length: str | None) -> CommResponse | None:
        """The handler's 413 for a declared ``Content-Length`` past its limit, else None.

        Such a body is refused unread.
        """
        declared = bodies.declared_too_large(content_length, self.handler.max_body_bytes)
        return None if declared is None else bodies.too_large(self.handler, declared)

    def answer_sync(
        self, content_length: str | None, read: Callable[[int], CommRequest]
    ) -> CommResponse:
        """The answer to one request: ``read(limit)`` converts it, unless refused unread.

        ``read`` reads the body in chunks and stops past ``limit`` (``bodies.read_sync``):
        the handler then answers 413 from the length alone.
        """
        refused = self.refusal(content_length)
        if refused is not None:
            return refused
        return self.handler.handle_sync(read(self.handler.max_body_bytes))

    async def answer_async(
        self, content_length: str | None, read: Callable[[int], Awaitable[CommRequest]]
    ) -> CommResponse:
        """Async twin of ``answer_sync`` (``read`` with ``bodies.read_async``)."""
        refused = self.refusal(content_length)
        if refused is not None:
            return refused
        return await self.handler.handle(await read(self.handler.max_body_bytes))

    def autosync(
        self, origin: str | None, path: str = "", mounted: str | Callable[[], str] | None = None
    ) -> None:
        """Register the app with its engine in dev mode, once (``autosync.start``).

        Args:
            origin: the app's origin as a request shows it; None: ``serve_origin``.
            path: the request's path (one to the serve path itself starts nothing).
            mounted: where the framework mounted the endpoint, when that differs from
                the serve path (a Django ``include()`` or Flask blueprint prefix), or a
                callable saying it (asked only when registering may start).
        """
        embedded = True if self.in_process else None
        autosync.start(self.handler, origin, embedded=embedded, path=path, mounted=mounted)


def serve(
    adapter: Adapter,
    client: Client,
    functions: Sequence[Function],
    options: _options.ServeOptions,
    *,
    mount: Callable[[Serving], _T],
    app: object = None,
    engine: object = None,
    database: str | None = None,
    mount_engine: Callable[[Serving, EmbeddedEngine], None] | None = None,
    in_process: bool = False,
) -> _T:
    """Take one adapter's ``serve`` through the ritual; returns what ``mount`` returns.

    Args:
        adapter: who serves.
        client, functions, options: the ``serve`` call's.
        mount: mounts the serve path on the framework (its views use the ``Serving``);
            what it returns, ``serve`` returns (the handler, an ASGI app, a URL pattern).
        app: the web app served on, marked so that a second ``serve`` on it is refused;
            None where ``serve`` builds something for the user to mount.
        engine, database: the adapter's ``engine=`` and ``database=``.
        mount_engine: mounts the embedded engine's API and dashboard (asked only when
            the engine exposes them); None: the adapter mounts none (nor logs why).
        in_process: the functions are called in this process by an engine the adapter's
            own settings made (Django's ``STEPLINE["ENGINE"]``): no autosync.

    Raises:
        TypeError: an option ``ServeOptions`` does not declare.
        ConfigError: an invalid option or ``engine=``, a function of another app,
            production mode with no engine URL and no ``engine=``, a second ``serve`` on
            ``app``, or what the adapter's ``mount`` refuses.
    """
    embedded = engine_option.resolve(client, functions, engine, database)
    handler = _options.build_handler(
        client,
        functions,
        adapter.framework,
        options,
        can_stream=adapter.can_stream,
        engine=embedded,
    )
    if app is not None:
        _check_unserved(adapter.caller, app, handler.route_path, client.app_id)
        _mark_served(app, handler.route_path, client.app_id)
    serving = Serving(handler, embedded, in_process=in_process or embedded is not None)
    if embedded is not None and mount_engine is not None:
        if embedded.expose_api:
            mount_engine(serving, embedded)
        else:
            adapter.logger.info(
                "embedded engine API not mounted: production client without expose_api"
            )
    return mount(serving)


def _check_unserved(caller: str, app: object, path: str, app_id: str) -> None:
    """Refuse a second ``serve`` of one Stepline app, or at one path, on one web app.

    The second call's route would shadow the first's (same path), or the engine would
    know one app at two URLs, each sync replacing the other's functions (same app id).
    Two Stepline apps at two paths stay allowed.

    Raises:
        ConfigError: naming what was served already and the one call to make instead.
    """
    served = _served(app)
    clash = path if path in served else next((p for p, a in served.items() if a == app_id), None)
    if clash is not None:
        raise _errors.ConfigError(
            f"{caller} was already called on this {type(app).__name__} (serving app "
            f"{served[clash]!r} at {clash}): call it once per app, with every function: "
            "serve(app, client, [fn_a, fn_b, ...])"
        )


def _mark_served(app: object, path: str, app_id: str) -> None:
    """Remember that ``serve`` registered ``app_id`` on ``app`` at ``path``."""
    with contextlib.suppress(AttributeError):  # an object with slots: nothing to mark
        setattr(app, _SERVED, {**_served(app), path: app_id})


def _served(app: object) -> dict[str, str]:
    served = getattr(app, _SERVED, None)
    return dict(served) if isinstance(served, dict) else {}
