"""``/v1/runs/{run_id}/stream``: a run publishes messages, readers follow them.

``POST`` appends (the SDK's publish), ``GET`` reads: a JSON page that long-polls up to
``wait`` seconds, or, with ``Accept: text/event-stream``, Server-Sent Events from
``Last-Event-ID`` (else ``after``) until the run has ended and every message is sent.
The SSE form holds one page of messages at a time: it reads the next page only once
the server has written the last (the ASGI server's flow control holds ``send`` while a
slow reader's socket is full), so a reader that stops reading costs one page. A page
holds at most ``service.PAGE_BYTES`` of message data (and ``limit`` messages), and a run
and a caller (the client's address) have a bounded number of readers at once
(``readers``; past it, 429): together they bound what readers make the engine hold.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline import _json
from stepline.engine._engine import Engine
from stepline.engine._http import wire
from stepline.engine._http.wire import ApiError
from stepline.engine._store.messages import StoredMessage
from stepline.engine._streams import wire as _wire
from stepline.engine._streams.readers import ReaderTicket, TooManyReadersError
from stepline.engine._streams.service import MessagePage, RunEndedError, StreamService

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

PATH = "/v1/runs/{run_id}/stream"
#: the longest a JSON read long-polls (``?wait=``)
MAX_WAIT = 30.0
#: the largest page (``?limit=``), and the JSON page's default
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: messages per page of the SSE form
SSE_PAGE = 100
#: seconds of silence after which the SSE form sends a ``: keepalive`` comment
KEEPALIVE = 15.0


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The stream routes, for ``api._Api.routes``."""
    routes = _StreamRoutes(engine)
    return [("POST", PATH, routes.publish), ("GET", PATH, routes.read)]


class _StreamRoutes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.streams = StreamService.of(engine)

    async def publish(self, request: Request) -> Response:
        body = await wire.read_json(request, self.engine.settings.max_body_bytes)
        try:
            seqs = await self.streams.publish(request.path_params["run_id"], body)
        except _wire.PublishError as exc:
            raise ApiError(exc.status, str(exc)) from None
        except RunEndedError as exc:
            raise ApiError(409, str(exc)) from None
        return wire.json_response({"data": {"seqs": seqs}})

    async def read(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        q = request.query_params
        topic = q.get("topic") or None
        if topic is not None and _wire.TOPIC.fullmatch(topic) is None:
            raise ApiError(400, "topic: want 1-128 characters of A-Z a-z 0-9 _ . : / -")
        after = _seq(q.get("after"), "after")
        if "text/event-stream" in request.headers.get("accept", ""):
            last = request.headers.get("last-event-id")
            if last:
                after = _seq(last, "Last-Event-ID")
            await self.streams.page(run_id, after, topic, 1)  # 404 before the stream starts
            ticket = self._admit(request, run_id)
            events = self._events(run_id, after, topic, ticket)
            # a stream never iterated (its client left before the headers went) lets go too
            weakref.finalize(events, ticket.release)
            return starlette.responses.StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        wait = _number(q.get("wait"), "wait", 0.0, MAX_WAIT)
        limit = int(_number(q.get("limit"), "limit", 1, MAX_LIMIT, integer=True) or DEFAULT_LIMIT)
        ticket = self._admit(request, run_id)
        try:
            page = await self.streams.next_page(run_id, after, topic, limit, wait)
        finally:
            ticket.release()
        return Response(_page_json(page), media_type="application/json")

    def _admit(self, request: Request, run_id: str) -> ReaderTicket:
        """A reader's place among the run's and its caller's, or a 429 naming the bound."""
        caller = request.client.host if request.client is not None else ""
        try:
            return self.streams.readers.admit(run_id, caller)
        except TooManyReadersError as exc:
            raise ApiError(429, str(exc)) from None

    async def _events(
        self, run_id: str, after: int, topic: str | None, ticket: ReaderTicket
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._follow(run_id, after, topic):
                yield chunk
        finally:
            ticket.release()

    async def _follow(self, run_id: str, after: int, topic: str | None) -> AsyncIterator[bytes]:
        yield b": stream\n\n"  # the headers go out now, not with the first message
        while True:
            page = await self.streams.next_page(run_id, after, topic, SSE_PAGE, KEEPALIVE)
            if page.messages:
                after = page.next
                yield b"".join(_event(m) for m in page.messages)
            elif page.ended:
                status = _json.dumpb({"status": page.status.value})
                yield b"event: end\ndata: " + status + b"\n\n"
                return
            else:
                yield b": keepalive\n\n"


def _message_json(m: StoredMessage) -> bytes:
    # the stored data is JSON text already (and the topic needs no escaping)
    return b'{"seq":%d,"topic":"%s","data":%s,"at":%s}' % (
        m.seq,
        m.topic.encode(),
        m.data.encode(),
        repr(m.published_at).encode(),
    )


def _event(m: StoredMessage) -> bytes:
    return b"id: %d\nevent: message\ndata: %s\n\n" % (m.seq, _message_json(m))


def _page_json(page: MessagePage) -> bytes:
    items = b",".join(_message_json(m) for m in page.messages)
    ended = b"true" if page.ended else b"false"
    return b'{"data":[%s],"ended":%s,"next":%d}' % (items, ended, page.next)


def _seq(text: str | None, name: str) -> int:
    """A seq to read after: an integer >= 0 (0 when absent)."""
    value = _number(text, name, 0, 2**62, integer=True)
    return int(value)


def _number(
    text: str | None, name: str, low: float, high: float, *, integer: bool = False
) -> float:
    if text is None or text == "":
        return 0
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # nan too
        kind = "an integer" if integer else "a number"
        raise ApiError(400, f"{name}: want {kind} from {low:g} to {high:g}, got {text!r}")
    return value
