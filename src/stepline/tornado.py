"""Serve Stepline functions from a Tornado application.

Example:
    >>> app = tornado.web.Application()
    >>> stepline.tornado.serve(app, client, [welcome])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import tornado.iostream
import tornado.web

from stepline._comm import CommHandler, CommRequest, CommResponse

if TYPE_CHECKING:
    import tornado.httputil

    from stepline._client import Client
    from stepline._function import Function

FRAMEWORK = "tornado"


def serve(
    app: tornado.web.Application,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
) -> CommHandler:
    """Add one handler for GET, PUT and POST at the serve path (default ``/api/inngest``).

    Requests are handled on the IOLoop: async functions run on it, sync functions on the
    handler's thread pool (``thread_pool_max_workers=0`` runs them inline, blocking the
    loop). With ``streaming="force"`` a POST answers 201 at once and keeps the connection
    alive until the result is written.

    Raises:
        ConfigError: an option is invalid or a function belongs to another app.
    """
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
    )
    route = re.escape(handler.route_path)
    app.add_handlers(r".*", [(route, _SteplineHandler, {"handler": handler})])
    return handler


class _SteplineHandler(tornado.web.RequestHandler):
    """One view for every method; other methods get Tornado's own 405."""

    def initialize(self, handler: CommHandler) -> None:
        self.comm = handler

    def check_xsrf_cookie(self) -> None:
        """The engine authenticates with signatures, never with an XSRF cookie."""

    def compute_etag(self) -> str | None:
        return None  # inspection answers must not be cached or turned into 304s

    async def get(self) -> None:
        await _to_tornado(self, await self.comm.handle(_from_tornado(self.request)))

    post = put = get


def _from_tornado(request: tornado.httputil.HTTPServerRequest) -> CommRequest:
    return CommRequest.build(
        method=request.method or "GET",
        url=request.full_url(),
        headers=request.headers.get_all(),
        body=request.body,
    )


async def _to_tornado(view: tornado.web.RequestHandler, response: CommResponse) -> None:
    view.set_status(response.status)
    for name, value in response.headers.items():
        view.set_header(name, value)
    if response.stream is None:
        view.write(response.body)
        return
    try:
        async for chunk in response.stream:
            view.write(chunk)
            await view.flush()
    except tornado.iostream.StreamClosedError:
        pass  # the engine hung up; it will retry the call
