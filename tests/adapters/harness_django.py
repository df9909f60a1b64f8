"""Contract harness for ``stepline.django``'s sync view over ``django.test.Client``.

Django is configured once per process, lazily: other harnesses share the process. This
module is also the ``ROOT_URLCONF``; ``serve()`` swaps its ``urlpatterns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django
import django.test
import django.urls
from django.conf import settings
from django.http import HttpResponseBase

import stepline
import stepline.django

from .harness import Reply

urlpatterns: list[Any] = []

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]


def configure() -> None:
    """Configure Django for the tests once; later calls do nothing."""
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            SECRET_KEY="stepline-tests-not-secret",
            MIDDLEWARE=MIDDLEWARE,
            INSTALLED_APPS=[],
            DATABASES={},
            TEMPLATES=[],
            USE_TZ=True,
        )
        django.setup()


def mount(*patterns: Any) -> None:
    """Make ``patterns`` the whole URLconf."""
    urlpatterns[:] = patterns
    django.urls.clear_url_caches()


def split_headers(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Django's test clients take the content type apart from the other headers."""
    rest = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    content_type = next(
        (v for k, v in headers.items() if k.lower() == "content-type"), "application/octet-stream"
    )
    return content_type, rest


def reply(response: HttpResponseBase, body: bytes) -> Reply:
    return Reply(response.status_code, {k.lower(): v for k, v in response.items()}, body)


class DjangoHarness:
    framework = "django"
    streaming = False

    def __init__(self) -> None:
        configure()

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        mount(stepline.django.serve(client, functions, async_mode=False, **options))

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        content_type, rest = split_headers(headers)
        http = django.test.Client(enforce_csrf_checks=True, raise_request_exception=True)
        response = http.generic(method, path, body, content_type, headers=rest)
        return reply(response, response.content)  # the sync view never streams
