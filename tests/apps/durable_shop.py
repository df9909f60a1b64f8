"""The durable endpoints every framework's test app declares: one shop, two faces.

``Shop`` holds a client, its ``EmbeddedEngine`` (SQLite, a 2 s lease so that a killed
request's call comes back soon) and what the handlers leave behind: each step appends
``"<name> <run id>"`` to a markers file (a test, or the crash scenario across two
processes, sees how many times each step ran) and the ``transfer`` endpoint logs who got
in. ``Shop.declare`` decorates the same handlers with a framework's ``durable`` (plain
``def`` or ``async def`` ones, as the shop is built) under these ids:

- ``orders`` (``POST /orders/{oid}``): steps a, b and c, answering what it saw; step c
  blocks for an hour on its first run in a process started with ``BLOCK=1``;
- ``nap``: a step, a one-second sleep (the request answers 202), a step, then a 201;
- ``made`` (``POST /made/{oid}``): an ``EndpointResponse`` (201, a header, text);
- ``small``: ``max_body=16``, echoing the body;
- ``note`` and ``unscoped``: behind the framework's own login; ``note`` names the caller
  with the framework's ``caller`` hook, ``unscoped`` does not;
- ``open`` and ``kept``: what was stored of the request (``kept`` keeps ``X-Custom``,
  ``X-Api-Key`` and ``?api_key=``);
- ``transfer`` and ``transfer-back`` (``cross_site=True``): ``authorize`` names the
  caller from the session; ``?nap=1`` sleeps briefly, ``?hold=1`` for an hour;
- ``parse``: the body as JSON, or the handler's 400 when it is not.

The frameworks' modules beside this one mount them; ``Shop.kit_authorize`` is their run
routes' (at ``/api``) hook.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import stepline
import stepline.web
from stepline.embedded import EmbeddedEngine

#: The app's sessions: a token (a bearer token or the ``session`` cookie) to its user.
USERS = {"tok-ada": "ada", "tok-bob": "bob"}
#: The endpoints whose run answers link to the kit's run routes.
RUN_ROUTES = "/api"
#: Headers and query parameters ``kept`` stores although the defaults would drop them.
KEPT_HEADERS = ("X-Custom", "x-api-key")
KEPT_QUERY = ("api_key",)
#: Where each endpoint is routed (``{oid}``: a path parameter, in each framework's syntax).
PATHS = {
    "orders": "/orders/{oid}",
    "nap": "/nap",
    "made": "/made/{oid}",
    "small": "/small",
    "note": "/note",
    "unscoped": "/unscoped",
    "open": "/open",
    "kept": "/kept",
    "transfer": "/transfer",
    "transfer-back": "/transfer-back",
    "parse": "/parse",
}
#: The endpoints behind the framework's own login (401 without a session).
LOGGED_IN = frozenset({"note", "unscoped"})

V = TypeVar("V")
Sync = stepline.SyncEndpointContext
Async = stepline.EndpointContext
Hook = Callable[[Any], Any]


def user_from(authorization: str | None, session: str | None) -> str | None:
    """The user a bearer token or a session cookie names, if any."""
    token = (authorization or "").removeprefix("Bearer ")
    return USERS.get(token) or USERS.get(session or "")


def hook(decide: Callable[[Any], Any], *, is_async: bool) -> Hook:
    """``decide`` as a plain ``def`` hook, or as an ``async def`` one."""
    if not is_async:
        return decide

    async def async_hook(arg: Any) -> Any:
        return decide(arg)

    return async_hook


class Shop:
    """A client, its embedded engine, and what its handlers leave behind.

    Args:
        app_id: the client's app id.
        database: the engine's SQLite file.
        markers: the file each step appends ``"<name> <run id>"`` to.
        is_async: declare ``async def`` handlers (else plain ``def`` ones).
        async_hooks: make ``authorize`` and ``caller`` hooks ``async def``.
    """

    def __init__(
        self,
        app_id: str,
        database: str,
        markers: Path,
        *,
        is_async: bool,
        async_hooks: bool = False,
    ) -> None:
        self.client = stepline.Client(app_id, is_production=False, environ={})
        self.engine = EmbeddedEngine(
            self.client, [], database=database, poll_interval=0.05, lease_seconds=2
        )
        self.markers = markers
        self.is_async = is_async
        self.async_hooks = async_hooks
        #: who ``transfer``'s handler was told is calling, call by call
        self.seen: list[str | None] = []
        #: ``"authorize"`` and ``"handler"``, as ``transfer``'s were reached
        self.reached: list[str] = []
        self.views: dict[str, Any] = {}

    # -- what the handlers leave -----------------------------------------------------------

    def mark(self, name: str, run_id: str) -> str:
        with self.markers.open("a") as out:
            out.write(f"{name} {run_id}\n")
        return name

    def marks(self, run_id: str | None = None) -> list[str]:
        """The steps that ran (for ``run_id``, or for any run), in order."""
        if not self.markers.exists():
            return []
        lines = [line.split() for line in self.markers.read_text().splitlines()]
        return [name for name, run in lines if run_id is None or run == run_id]

    def function(self, name: str) -> stepline.Function:
        """The durable function of the endpoint ``name``."""
        function: stepline.Function = self.views[name].endpoint.function
        return function

    @property
    def functions(self) -> list[stepline.Function]:
        return [view.endpoint.function for view in self.views.values()]

    # -- hooks ---------------------------------------------------------------------------

    def authorize(self, user_of: Callable[[Any], str | None]) -> Hook:
        """``transfer``'s hook: the session's user is the caller; none is a 401."""

        def decide(access: stepline.web.AccessRequest) -> stepline.web.Principal:
            self.reached.append("authorize")
            user = user_of(access.request)
            if user is None:
                raise stepline.web.AccessDenied("log in first", status=401)
            return stepline.web.Principal(f"user:{user}")

        return hook(decide, is_async=self.async_hooks)

    def caller(self, decide: Callable[[Any], str | None]) -> Hook:
        """A framework's ``caller`` hook, sync or async as the shop's hooks are."""
        return hook(decide, is_async=self.async_hooks)

    @staticmethod
    def kit_authorize(user_of: Callable[[Any], str | None]) -> Hook:
        """The run routes' hook: a logged-in user sees their runs, anyone the unowned."""

        def decide(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
            user = user_of(access.request)
            return True if user is None else stepline.web.Principal(f"user:{user}")

        return decide

    # -- the endpoints -------------------------------------------------------------------

    def declare(
        self,
        durable: Callable[..., Callable[[Callable[..., Any]], V]],
        *,
        user_of: Callable[[Any], str | None],
        caller: Hook | None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, V]:
        """Every endpoint, made by ``durable(**options)`` (the framework's decorator).

        Args:
            durable: the framework's ``durable`` with its client bound.
            user_of: the session's user, from the framework's request.
            caller: ``note``'s caller hook (None: the framework's default).
            extra: more options by endpoint id (a framework's own).
        """
        authorize = self.authorize(user_of)
        options: dict[str, dict[str, Any]] = {
            "orders": {"run_routes": RUN_ROUTES},
            "nap": {"run_routes": RUN_ROUTES},
            "made": {"run_routes": RUN_ROUTES},
            "small": {"max_body": 16},
            "note": {} if caller is None else {"caller": caller},
            "unscoped": {},
            "open": {},
            "kept": {"keep_headers": KEPT_HEADERS, "keep_query": KEPT_QUERY},
            "transfer": {"authorize": authorize, "run_routes": RUN_ROUTES, "retries": 0},
            "transfer-back": {"authorize": authorize, "cross_site": True},
            "parse": {},
        }
        handlers = self._async_handlers() if self.is_async else self._sync_handlers()
        views: dict[str, V] = {}
        for name, made in options.items():
            more = dict((extra or {}).get(name, {}))
            views[name] = durable(id=name, **made, **more)(handlers[name])
        self.views.update(views)
        return views

    def _sync_handlers(self) -> dict[str, Callable[..., Any]]:
        mark = self.mark

        def orders(ctx: Sync) -> dict[str, Any]:
            a = ctx.step.run("a", mark, "a", ctx.run_id)
            b = ctx.step.run("b", mark, "b", ctx.run_id)

            def c() -> str:
                if os.environ.get("BLOCK") == "1":  # the crash scenario's first process
                    mark("c-started", ctx.run_id)
                    time.sleep(3600)
                return mark("c", ctx.run_id)

            return {"steps": [a, b, ctx.step.run("c", c)], **_seen(ctx)}

        def nap(ctx: Sync) -> stepline.EndpointResponse:
            first = ctx.step.run("first", mark, "first", ctx.run_id)
            ctx.step.sleep("nap", dt.timedelta(seconds=1))
            then = ctx.step.run("then", mark, "then", ctx.run_id)
            return _napped(first, then)

        def made(ctx: Sync) -> stepline.EndpointResponse:
            ctx.step.run("make", mark, "make", ctx.run_id)
            return _made(ctx)

        def small(ctx: Sync) -> dict[str, str]:
            return {"echo": ctx.step.run("echo", lambda: ctx.request.text)}

        def note(ctx: Sync) -> dict[str, Any]:
            return ctx.step.run("save", lambda: _note(ctx))

        def transfer(ctx: Sync) -> dict[str, Any]:
            self._entered(ctx)
            order = ctx.step.run("debit", lambda: {"by": ctx.principal})
            if ctx.request.query.get("nap"):
                ctx.step.sleep("nap", dt.timedelta(seconds=0.2))
                self.seen.append(ctx.principal)
            if ctx.request.query.get("hold"):
                ctx.step.sleep("hold", dt.timedelta(hours=1))
            return _transferred(ctx, order)

        return {
            "orders": orders,
            "nap": nap,
            "made": made,
            "small": small,
            "note": note,
            "unscoped": note,
            "open": _request_seen,
            "kept": _request_seen,
            "transfer": transfer,
            "transfer-back": transfer,
            "parse": _parsed,
        }

    def _async_handlers(self) -> dict[str, Callable[..., Any]]:
        mark = self.mark

        async def orders(ctx: Async) -> dict[str, Any]:
            a = await ctx.step.run("a", mark, "a", ctx.run_id)
            b = await ctx.step.run("b", mark, "b", ctx.run_id)

            async def c() -> str:
                if os.environ.get("BLOCK") == "1":  # the crash scenario's first process
                    mark("c-started", ctx.run_id)
                    await asyncio.sleep(3600)
                return mark("c", ctx.run_id)

            return {"steps": [a, b, await ctx.step.run("c", c)], **_seen(ctx)}

        async def nap(ctx: Async) -> stepline.EndpointResponse:
            first = await ctx.step.run("first", mark, "first", ctx.run_id)
            await ctx.step.sleep("nap", dt.timedelta(seconds=1))
            then = await ctx.step.run("then", mark, "then", ctx.run_id)
            return _napped(first, then)

        async def made(ctx: Async) -> stepline.EndpointResponse:
            await ctx.step.run("make", mark, "make", ctx.run_id)
            return _made(ctx)

        async def small(ctx: Async) -> dict[str, str]:
            return {"echo": await ctx.step.run("echo", lambda: ctx.request.text)}

        async def note(ctx: Async) -> dict[str, Any]:
            saved: dict[str, Any] = await ctx.step.run("save", lambda: _note(ctx))
            return saved

        async def transfer(ctx: Async) -> dict[str, Any]:
            self._entered(ctx)
            order = await ctx.step.run("debit", lambda: {"by": ctx.principal})
            if ctx.request.query.get("nap"):
                await ctx.step.sleep("nap", dt.timedelta(seconds=0.2))
                self.seen.append(ctx.principal)
            if ctx.request.query.get("hold"):
                await ctx.step.sleep("hold", dt.timedelta(hours=1))
            return _transferred(ctx, order)

        async def request_seen(ctx: Async) -> dict[str, Any]:
            return _request_seen(ctx)

        async def parsed(ctx: Async) -> Any:
            return _parsed(ctx)

        return {
            "orders": orders,
            "nap": nap,
            "made": made,
            "small": small,
            "note": note,
            "unscoped": note,
            "open": request_seen,
            "kept": request_seen,
            "transfer": transfer,
            "transfer-back": transfer,
            "parse": parsed,
        }

    def _entered(self, ctx: Sync | Async) -> None:
        self.reached.append("handler")
        self.seen.append(ctx.principal)


# -- what the handlers answer, whichever face ------------------------------------------------


def _seen(ctx: Sync | Async) -> dict[str, Any]:
    request = ctx.request
    return {
        "oid": request.path_params.get("oid"),
        "sent": request.json(),
        "path": request.path,
        "query": dict(request.query),
    }


def _napped(first: str, then: str) -> stepline.EndpointResponse:
    return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})


def _made(ctx: Sync | Async) -> stepline.EndpointResponse:
    oid = ctx.request.path_params["oid"]
    return stepline.EndpointResponse(f"order {oid} made", status=201, headers={"x-order": oid})


def _note(ctx: Sync | Async) -> dict[str, Any]:
    return {"note": ctx.request.json(), "principal": ctx.principal}


def _request_seen(ctx: Sync | Async) -> dict[str, Any]:
    return {"headers": dict(ctx.request.headers), "query": dict(ctx.request.query)}


def _transferred(ctx: Sync | Async, order: Any) -> dict[str, Any]:
    request = ctx.request
    if request.headers.get("content-type", "").startswith("application/json"):
        to = (request.json() or {}).get("to")
    else:
        to = request.form().get("to")
    return {"to": to, "order": order, "by": ctx.principal}


def _parsed(ctx: Sync | Async) -> Any:
    """The body as JSON; a body that is not is the handler's 400 (the run ends there)."""
    try:
        return {"parsed": ctx.request.json()}
    except stepline.BodyInvalidError as exc:
        return stepline.EndpointResponse({"error": exc.message}, status=400)
