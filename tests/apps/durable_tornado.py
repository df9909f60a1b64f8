"""The shop's durable endpoints on Tornado (``durable_shop``), for the endpoint tests.

Each endpoint is a ``RequestHandler`` class; the login is Tornado's own idiom, a subclass
naming ``get_current_user`` from the session (and answering 401 without one);
``note``'s caller hook reads the handler's ``current_user``. Also ``seen``
(``GET`` or ``POST``, positional groups: what request it was given). The run routes are
at ``/api``. Runnable as a process for the crash scenario: ``python -m
tests.apps.durable_tornado PORT DATABASE MARKERS sync|async`` (an ``HTTPServer``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web

import stepline
import stepline.tornado
from tests.apps.durable_shop import LOGGED_IN, PATHS, Shop, user_from


def user_of(handler: tornado.web.RequestHandler) -> str | None:
    return user_from(handler.request.headers.get("authorization"), handler.get_cookie("session"))


def logged_in(view: type[tornado.web.RequestHandler]) -> type[tornado.web.RequestHandler]:
    """The endpoint's handler behind the app's login: ``current_user``, or 401."""

    class LoggedIn(view):  # type: ignore[valid-type, misc]
        def get_current_user(self) -> str | None:
            return user_of(self)

        async def post(self, *args: str | None, **kwargs: str | None) -> None:
            # called once the body is in: refused before it, the connection would close
            if self.current_user is None:
                raise tornado.web.HTTPError(401)
            await super().post(*args, **kwargs)

    return LoggedIn


def _pattern(path: str) -> str:
    return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)


@dataclasses.dataclass
class Built:
    shop: Shop
    app: tornado.web.Application


def build(
    database: str,
    markers: Path,
    *,
    is_async: bool,
    async_hooks: bool = False,
    xsrf: bool = False,
) -> Built:
    shop = Shop("shop-tornado", database, markers, is_async=is_async, async_hooks=async_hooks)

    def durable(**options: Any) -> Any:
        return stepline.tornado.durable(shop.client, **options)

    views = shop.declare(
        durable,
        user_of=user_of,
        caller=shop.caller(lambda handler: f"user:{handler.current_user}"),
    )

    @stepline.tornado.durable(shop.client, methods=("GET", "post"))
    def seen(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        request = ctx.request
        answer = {"method": request.method, "path": request.path, "query": dict(request.query)}
        answer["params"] = dict(request.path_params)
        return stepline.EndpointResponse(answer, status=201, headers={"X-Made": "yes"})

    shop.views["seen"] = seen
    rules: list[Any] = [
        (_pattern(PATHS[name]), logged_in(view) if name in LOGGED_IN else view)
        for name, view in views.items()
    ]
    rules.append((r"/seen/([^/]+)/([^/]+)", seen))  # positional groups
    app = tornado.web.Application(rules, xsrf_cookies=xsrf)
    stepline.tornado.serve(app, shop.client, [], engine=shop.engine)
    kit = stepline.tornado.runs_handlers(
        shop.client, shop.functions, authorize=Shop.kit_authorize(user_of), prefix="/api"
    )
    app.add_handlers(r".*", kit)
    return Built(shop, app)


def main(port: int, database: str, markers: Path, face: str) -> None:
    """Serve ``build(...)`` on 127.0.0.1:``port`` until killed."""

    async def serve() -> None:
        built = build(database, markers, is_async=face == "async")
        server = tornado.httpserver.HTTPServer(built.app)
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4])
