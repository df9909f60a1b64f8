"""Django: a second ``serve()`` of one app is refused by a system check.

Other adapters raise ``ConfigError`` on a second ``serve`` on one app; Django's ``serve``
builds a URL pattern, so the URL conf is checked: ``stepline.E001`` names both paths and
says what to do, through Django's own ``run_checks`` and ``manage.py check``.
"""

from __future__ import annotations

import io

import django.test
import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import include, path, re_path

import stepline
import stepline.django

from .django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)


def app(app_id: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id, is_production=False, environ={})

    @client.function(id="f", trigger=stepline.TriggerEvent(event=f"{app_id}/f"))
    def f(ctx: stepline.SyncContext) -> None:
        return None

    return client, [f]


def ours() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id and m.id.startswith("stepline.")]


def test_one_app_served_under_two_prefixes_is_an_error_naming_both_paths() -> None:
    client, functions = app("shop")
    served = stepline.django.serve(client, functions)
    mount(path("v1/", include([served])), re_path(r"^v2/", include([served])))
    [error] = ours()
    assert error.id == "stepline.E001"
    assert error.level == checks.ERROR
    assert "'shop' twice: at /v1/api/inngest and at /v2/api/inngest" in error.msg
    assert error.hint is not None
    assert "one serve(client, [fn_a, fn_b, ...])" in error.hint
    with pytest.raises(SystemCheckError, match=r"stepline\.E001.*/v1/api/inngest"):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_two_serve_calls_for_one_app_are_an_error() -> None:
    client, functions = app("shop")
    mount(
        stepline.django.serve(client, functions[:1]),
        stepline.django.serve(client, [], serve_path="/api/other"),
    )
    [error] = ours()
    assert "'shop' twice: at /api/inngest and at /api/other" in error.msg


def test_two_apps_at_one_path_are_an_error() -> None:
    (shop, shop_fns), (blog, blog_fns) = app("shop"), app("blog")
    mount(stepline.django.serve(shop, shop_fns), stepline.django.serve(blog, blog_fns))
    [error] = ours()
    assert error.id == "stepline.E001"
    assert "two stepline.django.serve() patterns at /api/inngest" in error.msg
    assert "(apps 'shop' and 'blog')" in error.msg
    # the second really is never reached: the first answers every inspection
    assert django.test.Client().get("/api/inngest").json()["function_count"] == 1


def test_two_apps_at_two_paths_and_one_app_once_pass() -> None:
    (shop, shop_fns), (blog, blog_fns) = app("shop"), app("blog")
    mount(
        path("shop/", include([stepline.django.serve(shop, shop_fns)])),
        path("blog/", include(([stepline.django.serve(blog, blog_fns)], "blog"), namespace="b")),
    )
    assert ours() == []
    call_command("check", stdout=io.StringIO(), stderr=io.StringIO())  # no SystemCheckError
