"""The shop's durable endpoints as Django views (``durable_shop``), for the endpoint tests.

``build`` returns the URL patterns to mount in the tests' URLconf: plain ``def`` handlers
make sync views, ``async def`` ones async views. The views are ``csrf_exempt``, as an
API's are, but for ``guarded/<oid>`` (``orders`` left to the CSRF middleware). The login
is a view wrapper setting ``request.user`` as Django's ``AuthenticationMiddleware``
does (401 without a session); ``note`` takes the caller from it by Django's default
(``request.user``), ``unscoped`` is told no caller hook (``caller=None``). The run
routes are at ``api/``.

Runnable as a process for the crash scenario: ``python -m tests.apps.durable_django
PORT DATABASE MARKERS sync|async``, Django's threaded WSGI server for sync views and
uvicorn for async ones.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import stepline.django
from tests.apps.durable_shop import LOGGED_IN, PATHS, Shop, user_from

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
#: The process's URLconf (``__main__``): set by ``main``.
urlpatterns: list[Any] = []


def user_of(request: HttpRequest) -> str | None:
    return user_from(request.headers.get("authorization"), request.COOKIES.get("session"))


def _log_in(request: HttpRequest) -> bool:
    """What ``AuthenticationMiddleware`` does, for the shop's sessions."""
    user = user_of(request)
    if user is None:
        return False
    request.user = SimpleNamespace(is_authenticated=True, pk=user)  # type: ignore[assignment]
    return True


def login_required(view: Any, *, is_async: bool) -> Any:
    """The view behind the app's login: ``request.user``, or 401."""
    refused = {"error": "log in first"}
    if is_async:

        async def async_view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if not _log_in(request):
                return JsonResponse(refused, status=401)
            answer: HttpResponse = await view(request, **kwargs)
            return answer

        return async_view

    def sync_view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if not _log_in(request):
            return JsonResponse(refused, status=401)
        answer: HttpResponse = view(request, **kwargs)
        return answer

    return sync_view


def _route(name: str) -> str:
    return PATHS[name].lstrip("/").replace("{", "<str:").replace("}", ">")


@dataclasses.dataclass
class Built:
    shop: Shop
    patterns: list[Any]


def build(database: str, markers: Path, *, is_async: bool, async_hooks: bool = False) -> Built:
    shop = Shop("shop-django", database, markers, is_async=is_async, async_hooks=async_hooks)
    views = shop.declare(
        functools.partial(stepline.django.durable, shop.client),
        user_of=user_of,
        caller=None,  # note: Django's default, the authenticated request.user
        extra={"unscoped": {"caller": None}},
    )
    patterns: list[Any] = [
        path(
            _route(name),
            csrf_exempt(login_required(view, is_async=is_async) if name in LOGGED_IN else view),
        )
        for name, view in views.items()
    ]
    kit = stepline.django.runs_urls(
        shop.client, shop.functions, authorize=Shop.kit_authorize(user_of), async_mode=is_async
    )
    patterns += [path("guarded/<str:oid>", views["orders"]), path("api/", include(kit))]
    return Built(shop, patterns)


def main(port: int, database: str, markers: Path, face: str) -> None:
    """Configure Django, mount ``build``'s patterns and serve them on 127.0.0.1:``port``."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="__main__",
        SECRET_KEY="stepline-tests-not-secret",
        MIDDLEWARE=MIDDLEWARE,
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()
    is_async = face == "async"
    urlpatterns[:] = build(database, markers, is_async=is_async).patterns
    if is_async:
        import uvicorn
        from django.core.handlers.asgi import ASGIHandler

        uvicorn.run(ASGIHandler(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        return
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    httpd = ThreadedWSGIServer(("127.0.0.1", port), WSGIRequestHandler)
    httpd.set_app(WSGIHandler())
    httpd.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4])
