"""What ``serve`` adds to a Tornado app: the request handlers it mounts (the engine's
calls, the embedded engine's API) and its per-request transforms (dev-mode autosync, the
embedded engine's start and its dashboard's URL), Tornado having no startup hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.iostream
import tornado.web

from stepline import embedded
from stepline._comm import CommRequest, CommResponse
from stepline._serving import serve as _serve
from stepline.embedded import _mounts

if TYPE_CHECKING:
    import tornado.httputil

__all__ = [
    "EngineHandler",
    "SteplineHandler",
    "StreamedBody",
    "announcing",
    "on_request",
    "registering",
    "starting",
]


class StreamedBody(tornado.web.RequestHandler):
    """Reads the body as it comes, keeping ``body_limit`` bytes (and a chunk) at most.

    Tornado would otherwise buffer a whole body (up to its ``max_body_size``, 100 MB by
    default) before the handler runs. Past the limit the handler answers at once (413)
    and Tornado closes the connection on the rest, unread.
    """

    body_limit = 0
    _body: bytearray
    _answered = False

    def prepare(self) -> None:
        self._body = bytearray()

    async def data_received(self, chunk: bytes) -> None:
        if self._answered:
            return  # refused: the rest is dropped until the connection closes
        self._body += chunk
        if len(self._body) > self.body_limit:
            try:
                await self.get()
            except tornado.web.HTTPError as exc:  # what Tornado does for one raised by get
                self.send_error(exc.status_code, reason=exc.reason)

    async def get(self) -> None:
        if not self._answered:
            self._answered = True
            self.request.body = bytes(self._body)
            await self.answer()
            if not self._finished:  # answered from data_received: no auto-finish then
                self.finish()

    async def answer(self) -> None:
        raise NotImplementedError


class EngineHandler(tornado.web.RequestHandler):
    """The embedded engine's REST API and dashboard, forwarded in-process."""

    def initialize(self, engine: embedded.EmbeddedEngine, mount: str) -> None:
        self.engine, self.mount = engine, mount

    def check_xsrf_cookie(self) -> None:
        """The engine guards itself: bearer keys, and a CSRF header for dashboard sessions."""

    def compute_etag(self) -> str | None:
        return None  # the engine sets its own ETags (dashboard assets)

    async def get(self) -> None:
        request = self.request
        if request.path == self.mount:  # the dashboard's URLs are relative to "{mount}/"
            self.redirect(f"{self.mount}/" + (f"?{request.query}" if request.query else ""))
            return
        headers = {name.lower(): value for name, value in request.headers.get_all()}
        headers.setdefault("x-forwarded-proto", request.protocol)  # for Secure cookies
        path = request.path[len(self.mount) :]
        method = request.method or "GET"
        forwarded = _mounts.forward(method, path, request.query, headers, request.body)
        response = await self.engine.request_async(forwarded)
        self.set_status(response.status or 502)
        for name, value in response.headers.items():
            if name not in _mounts.HOP:
                self.set_header(name, value)
        body = response.body if response.status else (response.error or "").encode()
        if body:  # Tornado refuses even an empty write on a 304
            self.write(body)
        self.finish()

    post = put = delete = patch = get


@tornado.web.stream_request_body
class SteplineHandler(StreamedBody):
    """One view for every method; other methods get Tornado's own 405."""

    def initialize(self, serving: _serve.Serving) -> None:
        self.serving = serving
        self.body_limit = serving.handler.max_body_bytes

    def prepare(self) -> None:
        super().prepare()
        refused = self.serving.refusal(self.request.headers.get("content-length"))
        if refused is not None:  # refused unread
            self._answered = True
            self.finish_comm(refused)

    def finish_comm(self, response: CommResponse) -> None:
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        self.finish(response.body)

    def check_xsrf_cookie(self) -> None:
        """The engine authenticates with signatures, never with an XSRF cookie."""

    def compute_etag(self) -> str | None:
        return None  # inspection answers must not be cached or turned into 304s

    async def answer(self) -> None:
        await _to_tornado(self, await self.serving.handler.handle(_from_tornado(self.request)))

    post = put = StreamedBody.get


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


def on_request(call: Callable[[tornado.httputil.HTTPServerRequest], None]) -> Any:
    """An output transform (duck-typed) calling ``call`` with each request.

    Tornado has no startup hook that knows the app's address; a transform sees every
    request, with its host, before the handler runs.
    """

    class _OnRequest:
        def __init__(self, request: tornado.httputil.HTTPServerRequest) -> None:
            call(request)

        def transform_first_chunk(
            self, status_code: int, headers: Any, chunk: bytes, finishing: bool
        ) -> tuple[int, Any, bytes]:
            return status_code, headers, chunk

        def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
            return chunk

    return _OnRequest


def origin(request: tornado.httputil.HTTPServerRequest) -> str:
    """The app's origin as ``request`` shows it (``http://host:port``)."""
    return f"{request.protocol}://{request.host}"


def announcing(engine: embedded.EmbeddedEngine, mount: str, served_origin: str | None) -> Any:
    """A transform logging the dashboard's URL at the first request."""

    def announce(request: tornado.httputil.HTTPServerRequest) -> None:
        if not engine.announced:
            engine.announce(served_origin or origin(request), mount)

    return on_request(announce)


def starting(engine: embedded.EmbeddedEngine) -> Any:
    """A transform starting the engine at the process's first request.

    Any request: a process that was (re)started runs its engine from then on, not from
    the client's first use. The first one waits for the engine to start (once).
    """
    return on_request(lambda _request: engine.on_request())


def registering(serving: _serve.Serving) -> Any:
    """A transform registering the app with its engine in dev mode (``Serving.autosync``)."""
    return on_request(lambda request: serving.autosync(origin(request), request.path))
