"""Dev mode: an app registers itself with its engine, so nobody has to ``curl -X PUT``.

Once the app knows its own URL (its first request, or at startup when ``serve_origin`` is
configured) it syncs out of band, as the engine's ``PUT`` would make it do, on a daemon
thread: startup never waits for it and never fails because of it. An unreachable engine
is retried with backoff, quietly: one log line when it starts failing, one when it
registers. Off in production mode and for ``engine="embedded"`` (served in process).

The policy is one flow: the register call's ``HttpRequest`` effects (as the SDK's own
sync makes them) and ``Sleep``; ``start`` drives it with the client's transport. A request
to the serve path itself does not start it: an engine (or a sync) is already talking.
Each adapter calls ``start`` from its own hook on requests: ASGI apps through
``Middleware`` here, the others from their framework's hook (Flask's ``before_request``,
a Tornado transform, Django's ``request_started``).
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepline._comm import app_sync
from stepline._comm.messages import decode_json_object
from stepline._comm.serve_endpoint import ServeEndpoint
from stepline._serving import asgi_scope
from stepline._transport.effects import Flow, HttpRequest, HttpResponse, Sleep, drive_sync

if TYPE_CHECKING:
    from stepline._comm.handler import CommHandler

logger = logging.getLogger("stepline")

#: the first retry, in seconds; it doubles up to ``RETRY_CAP``
RETRY_FIRST = 0.5
RETRY_CAP = 30.0

_started: weakref.WeakSet[CommHandler] = weakref.WeakSet()
_lock = threading.Lock()


def retry_delay(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones in a row (pure)."""
    return float(min(RETRY_CAP, RETRY_FIRST * 2 ** max(0, min(failures, 30) - 1)))


def flow(endpoint: ServeEndpoint, url: str) -> Flow[bool]:
    """Register ``url`` until the engine takes it; True once it did.

    A 4xx from the engine (a refused registration) is not retried: it will not change
    by itself, and the log line says why.
    """
    engine = endpoint.settings.api_base_url
    body = json.dumps(app_sync.register_payload(endpoint, url)).encode()
    failures = 0
    while True:
        post = HttpRequest("POST", f"{engine}/fn/register", {}, body)
        answer: HttpResponse = yield from app_sync.api_call(endpoint, post)
        if answer.ok:
            logger.info("registered %s with the engine at %s", url, engine)
            return True
        reason = _reason(answer)
        if 400 <= answer.status < 500 and answer.status not in (408, 429):
            logger.warning("the engine at %s refused %s: %s", engine, url, reason)
            return False
        failures += 1
        if failures == 1:
            logger.warning(
                "could not register %s with the engine at %s (%s); retrying quietly "
                "(start it with `stepline dev`, or point the app at yours with STEPLINE_DEV=URL)",
                url, engine, reason,
            )  # fmt: skip
        yield Sleep(retry_delay(failures))


def start(
    handler: CommHandler,
    origin: str | None,
    *,
    embedded: object = None,
    path: str = "",
    mounted: str | Callable[[], str] | None = None,
) -> None:
    """Register ``handler``'s app in the background, once per handler (dev mode only).

    Args:
        handler: the served endpoint.
        origin: the app's origin as a request showed it (``http://host:port``); None to
            use the configured ``serve_origin`` (nothing happens without either).
        embedded: the adapter's embedded engine, if any: then there is nothing to do.
        path: the request's path: one to the serve path itself starts nothing.
        mounted: where the framework really mounted the endpoint (a Django ``include()``
            prefix, a Flask blueprint's), when it differs from ``handler.route_path``; a
            callable is asked only when registering may start.
    """
    settings = handler.endpoint.settings
    if embedded is not None or not settings.is_dev or handler in _started:
        return
    try:
        served_at = (mounted() if callable(mounted) else mounted) or handler.route_path
    except Exception:  # the framework could not say (never the app's request's failure)
        logger.debug("where %s is mounted is unknown", handler.route_path, exc_info=True)
        served_at = handler.route_path
    base = handler.serve_origin or origin
    if not base or path == served_at:
        return
    with _lock:
        if handler in _started:
            return
        _started.add(handler)
    url = base.rstrip("/") + served_at
    transport = handler.client.connection.sync_transport
    registering = flow(handler.endpoint, url)
    thread = threading.Thread(
        target=drive_sync,
        args=(registering, transport.perform),
        name="stepline-register",
        daemon=True,
    )
    thread.start()


def started(handler: CommHandler) -> bool:
    """Whether ``start`` has begun registering ``handler``'s app (it does so once)."""
    return handler in _started


class Middleware:
    """ASGI: ``start`` at lifespan startup (with ``serve_origin``) or on the first request.

    Args:
        app: the wrapped ASGI app.
        handler: the served endpoint.
        embedded: the adapter's embedded engine, if any (then it only passes through).
    """

    def __init__(self, app: Any, handler: CommHandler, embedded: object = None) -> None:
        self.app, self.handler, self.embedded = app, handler, embedded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            start(self.handler, None, embedded=self.embedded)
        elif kind == "http" and self.handler not in _started:
            # the app's URL as its clients reach it: under a mount or a proxy's root_path
            mounted = scope.get("root_path", "") + self.handler.route_path
            path = asgi_scope.full_path(scope)
            start(
                self.handler,
                asgi_scope.origin(scope),
                embedded=self.embedded,
                path=path,
                mounted=mounted,
            )
        await self.app(scope, receive, send)


def _reason(answer: HttpResponse) -> str:
    """What went wrong, in one short line."""
    detail = decode_json_object(answer.body) or {}
    text = detail.get("error") or answer.error or answer.body[:200].decode(errors="replace")
    return f"status {answer.status}: {text}" if answer.status else str(text)
