"""Where the embedded engine's dashboard is: one log line, once per process per engine.

The adapters know where they mounted the engine; the app's origin comes from
``serve_origin`` (known at startup) or else from the first request. Each adapter calls
``announce`` at the first point it knows both; the engine logs the URL once, and again
in a forked child (a new process: a gunicorn worker says where it serves too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from stepline._serving import asgi_scope

__all__ = ["AnnounceMiddleware", "Announcer", "Announcing", "asgi_origin", "dashboard_url"]

logger = logging.getLogger("stepline")
_lock = threading.Lock()


def dashboard_url(origin: str, mount: str) -> str:
    """The dashboard's URL: the app's origin (with any root path), the mount, its ``/``.

    The dashboard is the engine's ``/`` page, and its links are relative to the mount's
    directory, so the URL ends with a slash. Pure.
    """
    inner = mount.strip("/")
    return origin.rstrip("/") + (f"/{inner}/" if inner else "/")


def asgi_origin(scope: Mapping[str, Any], *, root_path: bool = True) -> str | None:
    """``scheme://host`` (and the ``root_path``) from an ASGI scope; None without a host."""
    return asgi_scope.origin(scope, root_path=root_path)


class Announcer:
    """Says where the dashboard is, once per process (a forked child makes a new one)."""

    def __init__(self) -> None:
        self._announced = False

    @property
    def announced(self) -> bool:
        """True once this process logged where the dashboard is."""
        return self._announced

    def announce(self, origin: str | None, mount: str) -> bool:
        """Log the dashboard's URL, the first time an origin is known (once per process).

        Args:
            origin: the app's public origin, with any root path it is served under
                (``serve_origin``, or a request's ``scheme://host``); None: not known yet.
            mount: where the adapter mounted the engine's API and dashboard.

        Returns:
            True when this call logged it.
        """
        if not origin or self._announced:
            return False
        with _lock:  # two threads' first requests: one line
            first, self._announced = not self._announced, True
        if not first:
            return False
        # WARNING, not INFO: `flask run`, `uvicorn`, `manage.py runserver` and a bare
        # Tornado app configure no handler for the "stepline" logger, so Python's
        # last-resort handler prints WARNING and above only: at INFO the developer this
        # line is for would never see it.
        logger.warning("the embedded engine's dashboard is at %s", dashboard_url(origin, mount))
        return True


class Announcing(Protocol):
    """What ``AnnounceMiddleware`` needs: an ``Announcer``, or the engine that holds one."""

    @property
    def announced(self) -> bool: ...

    def announce(self, origin: str | None, mount: str) -> bool: ...


class AnnounceMiddleware:
    """ASGI: ``announce`` on the first request (the adapter's lifespan does at startup).

    Args:
        app: the wrapped ASGI app.
        engine: the embedded engine.
        mount: where the engine is mounted in the app.
        serve_origin: the app's configured public origin, if any (else the request's).
    """

    def __init__(self, app: Any, engine: Announcing, mount: str, serve_origin: str | None) -> None:
        self.app, self.engine, self.mount, self.serve_origin = app, engine, mount, serve_origin

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.engine.announced and scope.get("type") in ("http", "websocket"):
            self.engine.announce(self.serve_origin or asgi_origin(scope), self.mount)
        await self.app(scope, receive, send)
