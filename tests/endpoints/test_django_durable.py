"""What only Django's durable views do: ``stepline.django.durable``.

What every framework does (Django's ``Client`` and WSGI for sync views, its
``AsyncClient`` and uvicorn for async views) is in ``test_endpoint_contract.py``; the
views are ``tests/apps/durable_django.py``. Here: Django's CSRF middleware in front of a
view not exempted, hooks kept off the event loop, the settings' client, and
``request.user`` as the default caller when nobody is logged in. Django is configured
once per process by ``tests/adapters/harness_django`` (through ``tests/web/django_setup``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django.test
import pytest
from django.http import HttpRequest
from django.test import override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

import stepline
import stepline.django
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests.apps import durable_django
from tests.web.django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_csrf_middleware_guards_the_view(tmp_path: Path, is_async: bool) -> None:
    built = durable_django.build(str(tmp_path / "e.db"), tmp_path / "marks", is_async=is_async)
    mount(*built.patterns)
    try:
        if is_async:
            http: Any = django.test.AsyncClient(enforce_csrf_checks=True)
            call: Any = lambda url: asyncio.run(http.post(url, b"{}", "application/json"))  # noqa: E731
        else:
            http = django.test.Client(enforce_csrf_checks=True)
            call = lambda url: http.post(url, b"{}", "application/json")  # noqa: E731
        guarded = call("/guarded/1")
        assert guarded.status_code == 403  # not exempt: no run without the CSRF token
        assert "x-stepline-run-id" not in guarded
        orders = built.shop.function("orders")
        assert built.shop.client.list_runs_sync(function=orders)[0] == []
        exempt = call("/orders/1")  # what an API wraps in csrf_exempt itself
        assert exempt.status_code == 200
        assert exempt.json()["steps"] == ["a", "b", "c"]
    finally:
        built.shop.engine.stop()


def test_authorize_runs_off_the_event_loop_and_names_the_principal(tmp_path: Path) -> None:
    client = stepline.Client("dj-auth", is_production=False, environ={})
    seen: list[tuple[HttpRequest, bool]] = []

    def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append((access.request, on_loop))
        user = access.request.headers.get("x-user")
        if user is None:
            raise stepline.web.AccessDenied("log in first", status=401)
        return stepline.web.Principal(user)

    @stepline.django.durable(client, authorize=authorize)
    async def mine(ctx: stepline.EndpointContext) -> dict[str, str | None]:
        return {"principal": ctx.principal}

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    mount(path("mine", csrf_exempt(mine)))
    try:
        http = django.test.AsyncClient()
        anonymous = asyncio.run(http.post("/mine"))
        assert (anonymous.status_code, anonymous.json()) == (401, {"error": "log in first"})
        ada = asyncio.run(http.post("/mine", headers={"x-user": "ada"}))
        assert (ada.status_code, ada.json()) == (200, {"principal": "ada"})
        run = client.get_run_sync(ada["x-stepline-run-id"]).describe()
        assert run.started_by == "ada"
    finally:
        engine.stop()
    assert [on_loop for _, on_loop in seen] == [False, False]  # sync_to_async: a thread
    assert all(isinstance(request, HttpRequest) for request, _ in seen)


def test_an_async_authorize_needs_an_async_handler() -> None:
    client = stepline.Client("dj-refused", is_production=False, environ={})

    async def authorize(access: stepline.web.AccessRequest) -> bool:
        return True

    with pytest.raises(stepline.ConfigError, match="authorize is async"):

        @stepline.django.durable(client, authorize=authorize)
        def pay(ctx: stepline.SyncEndpointContext) -> str:
            return "never"


def test_the_client_defaults_to_the_settings_client(tmp_path: Path) -> None:
    setting = {
        "APP_ID": "dj-cfg",
        "DEV": True,
        "FUNCTIONS": "tests.apps.django_kit_functions.make",
        "ENGINE": "embedded",
        "DATABASE": str(tmp_path / "cfg.db"),
        "ENGINE_OPTIONS": {"poll_interval": 0.05},
    }
    with override_settings(STEPLINE=setting):

        @stepline.django.durable()
        def pay(ctx: stepline.SyncEndpointContext) -> dict[str, str]:
            return {"paid": ctx.step.run("pay", lambda: ctx.request.path_params["oid"])}

        assert pay.endpoint.client is stepline.django.get_client()
        assert pay.endpoint.function.composite_id == "dj-cfg-pay"
        mount(path("pay/<oid>", csrf_exempt(pay)))
        reply = django.test.Client().post("/pay/9")
        assert (reply.status_code, reply.json()) == (200, {"paid": "9"})
    with override_settings(STEPLINE=None), pytest.raises(stepline.ConfigError, match="STEPLINE"):
        stepline.django.durable()(pay)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_anonymous_request_user_scopes_no_key(tmp_path: Path, is_async: bool) -> None:
    """The default caller is an authenticated ``request.user``: a session cookie whose
    user is anonymous (as ``AuthenticationMiddleware`` sets it) names nobody, so a key on
    that request is refused, not shared; a logged-in user's key is theirs (the contract's
    ``note`` checks how)."""
    client = stepline.Client("dj-keys", is_production=False, environ={})

    def log_in(request: HttpRequest) -> None:  # what AuthenticationMiddleware does
        pk = {"s-ada": 1}.get(request.COOKIES.get("sessionid", ""))
        request.user = SimpleNamespace(is_authenticated=pk is not None, pk=pk)  # type: ignore[assignment]

    if is_async:

        @stepline.django.durable(client)
        async def note(ctx: stepline.EndpointContext) -> dict[str, Any]:
            return {"principal": ctx.principal}

        async def async_view(request: HttpRequest) -> Any:
            log_in(request)
            return await note(request)

        view: Any = async_view

    else:

        @stepline.django.durable(client)
        def sync_note(ctx: stepline.SyncEndpointContext) -> dict[str, Any]:
            return {"principal": ctx.principal}

        def sync_view(request: HttpRequest) -> Any:
            log_in(request)
            return sync_note(request)

        view = sync_view

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    mount(path("note", csrf_exempt(view)))
    try:
        http: Any = django.test.AsyncClient() if is_async else django.test.Client()

        def post(session: str) -> Any:
            http.cookies["sessionid"] = session
            answer = http.post("/note", {}, "application/json", headers={"idempotency-key": "k"})
            return asyncio.run(answer) if is_async else answer

        ada = post("s-ada")
        assert (ada.status_code, ada.json()) == (200, {"principal": "user:1"})
        anonymous = post("nobody")  # a session cookie, no user: no scope
        assert anonymous.status_code == 400, anonymous.content
        assert "caller=" in anonymous.json()["error"]
        assert "idempotent-replayed" not in anonymous
    finally:
        engine.stop()
