"""``durable()``: a Tornado ``RequestHandler`` whose handler is a durable function run inline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import tornado.web
from typing_extensions import Unpack

from stepline import _errors
from stepline._client import Client
from stepline._endpoints.endpoint import Endpoint, EndpointArgs, stamp
from stepline._webkit import routes as _webkit
from stepline.tornado import _views

__all__ = ["DurableHandler", "durable"]


def durable(
    client: Client,
    *,
    methods: Sequence[str] = ("POST",),
    **options: Unpack[EndpointArgs],
) -> Callable[[Callable[..., Any]], type[DurableHandler]]:
    """Make the decorated handler a durable endpoint: a ``RequestHandler`` for a URL spec.

    The handler takes an ``EndpointContext`` (``async def``, run on the IOLoop) or a
    ``SyncEndpointContext`` (``def``, run in a thread) and returns a JSON-able value or an
    ``EndpointResponse``. Steps run in the request, each recorded before the next; a
    sleep, a wait or a retry answers 202 with ``Location`` (the kit's result route,
    ``runs_handlers`` under ``run_routes``) and the engine finishes the run.

    The URL pattern's groups reach the handler as ``ctx.request.path_params``: named
    groups by name; a pattern with positional groups only (Tornado passes those when
    there is no named group) by their index as a string (``"0"``, ``"1"``...). The class
    keeps the ``Endpoint`` as ``endpoint`` (its function: ``pay.endpoint.function``, for
    ``runs_handlers``). The body is read as it comes and refused (413) past ``max_body``.
    An app with ``xsrf_cookies=True`` checks its token on these requests too.

    Example:
        >>> @stepline.tornado.durable(client, retries=3)
        ... async def pay(ctx: stepline.EndpointContext) -> dict[str, str]:
        ...     order_id = ctx.request.path_params["order_id"]
        ...     return {"charge": await ctx.step.run("charge", charge_card, order_id)}
        >>> app = tornado.web.Application([(r"/orders/(?P<order_id>[^/]+)/pay", pay)])

    Args:
        client: the app's client (``serve()`` serves the endpoint's function).
        methods: the HTTP methods answered (others get 405, once the body is read).
        **options: ``Endpoint``'s options (``id``, ``authorize``, ``budget``,
            ``run_routes``, ``keep_headers``, ``keep_query``, ``max_body``, ``caller``,
            ``cross_site``) and the function's
            (``retries``, ``concurrency``, ``throttle``...).

    Raises:
        ConfigError: no method, a method Tornado does not route, or an invalid option.
    """
    allowed = tuple(dict.fromkeys(str(method).upper() for method in methods))
    unknown = [m for m in allowed if m not in tornado.web.RequestHandler.SUPPORTED_METHODS]
    if not allowed or unknown:
        raise _errors.ConfigError(
            f"stepline.tornado.durable: methods must be some of "
            f"{', '.join(tornado.web.RequestHandler.SUPPORTED_METHODS)}, not {list(methods)!r}"
        )

    def decorate(handler: Callable[..., Any]) -> type[DurableHandler]:
        endpoint = Endpoint(client, handler, **options)

        @tornado.web.stream_request_body
        class Handler(DurableHandler):
            pass

        Handler.allowed, Handler.body_limit = allowed, endpoint.max_body
        stamp(Handler, handler, endpoint)
        return Handler

    return decorate


@tornado.web.stream_request_body
class DurableHandler(_views.StreamedBody):
    """A durable endpoint's handler (``durable`` makes one subclass per endpoint).

    Every method Tornado routes comes in, and the body is read (up to ``max_body``)
    before any answer: a method not in ``allowed`` gets 405 then. Refused before its
    body is read, a request's connection is closed by Tornado with no ``Connection:
    close`` said, and a client reusing it would see its next request reset.
    """

    endpoint: ClassVar[Endpoint]
    allowed: ClassVar[tuple[str, ...]] = ("POST",)
    _xsrf_due = False

    def check_xsrf_cookie(self) -> None:
        # checked in answer(), once the body is in (see the class's docstring)
        self._xsrf_due = True

    def compute_etag(self) -> str | None:
        return None  # a run's answer is never a 304

    async def answer(self) -> None:
        method = self.request.method or "GET"
        if method not in self.allowed:
            reply = _webkit.json_response(405, {"error": f"method {method} not allowed"})
            reply.headers["allow"] = ", ".join(self.allowed)
        elif (refused := self._xsrf_refusal()) is not None:
            reply = refused
        else:
            reply = await self.endpoint.handle_async(self._web_request(), self._path_params())
        if len(self.request.body) > self.body_limit:
            # answered from data_received, the body not read to its end: Tornado closes
            # the connection after this answer; say so, or a client reusing it would
            # see its next request reset
            self.set_header("Connection", "close")
        self.set_status(reply.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        if reply.body and not (reply.status in (204, 304) or reply.status < 200):
            self.write(reply.body)  # Tornado refuses a body (even an empty one) on these
        self.finish()

    async def _route(self, *args: str | None, **kwargs: str | None) -> None:
        # the groups are read from path_args / path_kwargs, as data_received has none
        await _views.StreamedBody.get(self)

    get = head = post = delete = patch = put = options = _route

    def _xsrf_refusal(self) -> _webkit.WebResponse | None:
        if not self._xsrf_due:
            return None
        try:
            super().check_xsrf_cookie()
        except tornado.web.HTTPError as exc:  # answered here, with the connection kept
            return _webkit.json_response(exc.status_code, {"error": "the XSRF check failed"})
        return None

    def _path_params(self) -> dict[str, Any]:
        if self.path_kwargs:
            return dict(self.path_kwargs)
        return {str(index): value for index, value in enumerate(self.path_args)}

    def _web_request(self) -> _webkit.WebRequest:
        request = self.request
        return _webkit.WebRequest(
            method=request.method or "POST",
            path=request.path,
            query={name: self.get_query_argument(name) for name in request.query_arguments},
            body=request.body,
            native=self,
            headers={name.lower(): value for name, value in request.headers.get_all()},
        )
