"""A node leaving its load balancer's pool: ``/ready`` answers 503 while requests are served.

A load balancer that routes by ``/ready`` keeps sending a stopping node requests until its
health checks have failed (haproxy's defaults: three checks, two seconds apart). A listener
closed at the signal refuses those, and a request already sent over a kept-alive
connection as the node closes it is lost with no answer. So a stop begins with a drain:
``/ready`` answers 503 ``draining``, every other route is served as before, each answer
closes its connection (nothing is left idle to race the close), and the listener stays
open until ``drain_delay`` seconds have passed, or sooner once no request but a probe has
arrived for ``QUIET`` seconds: traffic has moved elsewhere, or there was none. A
connection refused after that is one a load balancer retries on another node by itself.

``Drain`` is the state (pure: it is given the time); ``Arrivals`` is the ASGI middleware
that notes each request and closes connections while draining.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import starlette.datastructures
import starlette.types

#: Seconds without a request (probes aside) after which a drain ends before its delay.
QUIET = 1.0
#: What load balancers, orchestrators and scrapers ask: they do not count as traffic.
PROBES = frozenset({"/ready", "/health", "/metrics"})


class Drain:
    """Whether the node is draining, since when, and when a request last arrived.

    Args:
        clock: seconds, monotonic (``time.monotonic`` unless a test gives one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.since: float | None = None
        self.last = float("-inf")

    @property
    def draining(self) -> bool:
        """Whether the stop has begun (``/ready`` answers 503)."""
        return self.since is not None

    def begin(self) -> None:
        """Start draining (a second call keeps the first start)."""
        if self.since is None:
            self.since = self._clock()

    def arrived(self, path: str) -> None:
        """Note a request to ``path`` (probes are not traffic)."""
        if path not in PROBES:
            self.last = self._clock()

    def over(self, delay: float) -> bool:
        """Whether the listener may close: ``delay`` has passed, or ``QUIET`` without traffic.

        Args:
            delay: the most seconds the drain lasts (``drain_delay``).

        Returns:
            Whether the drain is over.
        """
        now = self._clock()
        since = now if self.since is None else self.since
        return now - since >= delay or now - self.last >= QUIET


class Arrivals:
    """Note every HTTP request in ``drain``; while draining, answer with ``Connection: close``."""

    def __init__(self, app: starlette.types.ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        drain.arrived(scope["path"])

        async def closing(message: starlette.types.Message) -> None:
            if message["type"] == "http.response.start" and drain.draining:
                starlette.datastructures.MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        await self.app(scope, receive, closing)
