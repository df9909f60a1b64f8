"""``runs_handlers()``: the web-app kit's run routes as Tornado rules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import tornado.iostream
import tornado.routing
import tornado.web
from typing_extensions import Unpack

from stepline._webkit import kit
from stepline._webkit import routes as _webkit
from stepline.tornado import _views

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["RunsHandler", "runs_handlers"]


def runs_handlers(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: _webkit.Authorize,
    **options: Unpack[kit.KitOptions],
) -> list[tornado.routing.Rule]:
    """The kit's run routes under ``prefix``, for ``Application(...)`` or ``add_handlers``.

    ``POST {prefix}/runs`` starts one of ``functions``; ``GET {prefix}/runs/{id}``,
    ``POST {prefix}/runs/{id}/cancel``, ``GET {prefix}/runs/{id}/result?wait=`` and
    ``GET {prefix}/runs/{id}/events`` (Server-Sent Events) follow it; ``{prefix}/approvals``
    lists and answers durable agents' tool calls waiting for a person. ``authorize`` (sync
    or async) receives an ``AccessRequest`` whose ``request`` is the ``RequestHandler``,
    so ``access.request.current_user`` works. An app with ``xsrf_cookies=True`` keeps
    checking its XSRF token on the POSTs.

    ``options`` are the kit's ``KitOptions``, the same for every framework (``inputs``,
    ``prefix``, ``poll_interval``, ``keepalive``, ``result_wait``, ``max_readers_per_run``,
    ``max_readers_per_caller``).

    Raises:
        ConfigError: no ``authorize``, no functions, or a ``prefix`` not starting with ``/``.
    """
    routes, prefix = kit.run_routes("runs_handlers", client, functions, authorize, options)
    rules = []
    for under in ("/runs", "/approvals"):
        collection = prefix + under
        pattern = re.escape(collection) + r"(?:/.*)?"
        kwargs = {"routes": routes, "collection": collection, "under": under}
        rules.append(
            tornado.routing.Rule(tornado.routing.PathMatches(pattern), RunsHandler, kwargs)
        )
    return rules


@tornado.web.stream_request_body
class RunsHandler(_views.StreamedBody):
    body_limit = _webkit.MAX_BODY  # past it, the kit answers 413

    def initialize(self, routes: _webkit.RunRoutes, collection: str, under: str = "/runs") -> None:
        self.routes, self.collection, self.under = routes, collection, under
        self._pump: asyncio.Future[None] | None = None
        self._gone = False

    _xsrf_due = False

    def compute_etag(self) -> str | None:
        return None  # a run's state must never be answered with 304

    def check_xsrf_cookie(self) -> None:
        # checked in answer(), once the body is in: a refusal before it would close the
        # connection on the unread body, and the client could see a reset, not the 403
        self._xsrf_due = True

    def on_connection_close(self) -> None:
        super().on_connection_close()  # ends a body still being read
        self._gone = True
        if self._pump is not None:
            self._pump.cancel()  # stop polling the engine for a reader who left

    async def answer(self) -> None:
        if self._xsrf_due:
            super().check_xsrf_cookie()
        request = self.request
        response = await self.routes.handle_async(
            _webkit.WebRequest(
                method=request.method or "GET",
                path=self.under + request.path[len(self.collection) :],
                query={name: self.get_query_argument(name) for name in request.query_arguments},
                body=request.body,
                native=self,
                mount=self.collection[: -len(self.under)],
                headers={name.lower(): value for name, value in request.headers.get_all()},
            )
        )
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        if response.stream is None:
            self.finish(response.body)
            return
        if self._gone:  # the reader left while the run was looked up
            return
        self._pump = asyncio.ensure_future(self._write_events(response))
        try:
            await self._pump
        except asyncio.CancelledError:
            if not self._gone:
                raise

    post = put = patch = delete = _views.StreamedBody.get  # RunRoutes answers 405 itself (JSON)

    async def _write_events(self, response: _webkit.WebResponse) -> None:
        chunks = self.routes.chunks_async(response)
        try:
            async for chunk in chunks:
                self.write(chunk)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            pass  # the reader left between two events
        finally:
            aclose = getattr(chunks, "aclose", None)  # an async generator: stop its polling
            if aclose is not None:
                await aclose()
