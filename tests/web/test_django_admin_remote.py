"""The Django admin over a separate engine: the project's client reaches it over HTTP.

The engine is an ``EmbeddedEngine`` of another process's client in all but name (its own
client and functions), served by uvicorn on 127.0.0.1; the Django project's ``STEPLINE``
names it by ``BASE_URL`` and has no engine of its own. The project's app id is another
one (a dev-mode project syncs itself with its engine: as ``far`` it would take the app's
place): the admin shows every app's runs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from tests._support import refusing
from tests._support.polling import wait_until
from tests._support.server_thread import serving
from tests.apps import django_admin_functions

from .django_admin_setup import admin_project, browser, mount_admin
from .django_setup import _django  # noqa: F401 (_django: an autouse fixture)

pytestmark = [pytest.mark.slow]


def test_the_admin_lists_shows_cancels_and_signals_runs_of_a_separate_engine(
    tmp_path: Path,
) -> None:
    far = stepline.Client("far", is_production=False, environ={})

    @far.function(id="approve", trigger=stepline.TriggerEvent(event="far/approve"))
    def approve(ctx: stepline.SyncContext) -> object:
        return ctx.step.wait_for_signal("review", signal="approved", timeout="1h")

    engine = EmbeddedEngine(
        far,
        [*django_admin_functions.functions(far), approve],
        database=str(tmp_path / "engine.db"),
        poll_interval=0.05,
    )
    try:
        greet = far.start_sync("greet", {"name": "Bo"})
        assert greet.result(timeout=20) == {"text": "Hello, Bo!"}
        hold = far.start_sync("hold")
        wait_until(
            lambda: any(s.status == "Sleeping" for s in hold.steps()),
            timeout=20,
            message="hold to sleep",
        )
        waiting = far.start_sync("approve")
        wait_until(
            lambda: any(s.status == "Waiting" for s in waiting.steps()),
            timeout=20,
            message="approve to wait for its signal",
        )
        with (
            serving(engine.asgi_app(), lifespan="off") as url,
            admin_project(tmp_path / "django.db", APP_ID="site", DEV=True, BASE_URL=url),
        ):
            mount_admin()
            http = browser("root", superuser=True)
            page = html.unescape(http.get("/admin/stepline/run/").content.decode())
            assert greet.run_id in page
            assert hold.run_id in page
            detail = http.get(f"/admin/stepline/run/{greet.run_id}/change/")
            assert detail.status_code == 200
            assert re.search(r'"text": "Hello, Bo!"', html.unescape(detail.content.decode()))
            cancelled = http.post(
                "/admin/stepline/run/",
                {"action": "cancel", "_selected_action": [hold.run_id]},
                follow=True,
            )
            assert f"Cancelled run {hold.run_id}" in cancelled.content.decode()
            assert hold.status() is stepline.RunStatus.CANCELLED
            # the engine's audit log names the admin's user, not the key it called with
            audit = httpx.get(f"{url}/v1/audit", timeout=10).json()["data"]
            [entry] = [e for e in audit if e["target"] == f"run_id={hold.run_id}"]
            assert entry["principal"] == "django:root"
            assert entry["outcome"] == "ok"
            assert entry["action"].endswith("/v1/runs/{run_id}/cancel") or entry["action"] == (
                "DELETE /v1/runs/{run_id}"
            )
            refused = http.post(
                f"/admin/stepline/run/{waiting.run_id}/change/",
                {"_action": "signal", "signal": "nope"},
            )
            assert refused.status_code == 200
            assert "not waiting for signal &#x27;nope&#x27;" in refused.content.decode()
            signalled = http.post(
                f"/admin/stepline/run/{waiting.run_id}/change/",
                {"_action": "signal", "signal": "approved", "payload": '{"ok": true}'},
            )
            assert signalled.status_code == 302
            assert waiting.result(timeout=20) == {"ok": True}
            functions = html.unescape(http.get("/admin/stepline/function/").content.decode())
            assert "far-greet" in functions
    finally:
        engine.stop()


def test_an_unreachable_engine_is_a_message_not_a_crash(tmp_path: Path) -> None:
    setting = {"APP_ID": "gone", "DEV": True, "BASE_URL": refusing.url()}
    with admin_project(tmp_path / "django.db", **setting):
        mount_admin()
        http = browser("root", superuser=True)
        for url in (
            "/admin/stepline/run/",
            "/admin/stepline/event/",
            "/admin/stepline/function/",
            "/admin/stepline/approval/",
            "/admin/stepline/approval/01J0-0123abcd/change/",
        ):
            response = http.get(url)
            assert response.status_code == 502, url
            assert "The Stepline engine could not be read" in response.content.decode()
            assert "unreachable" in response.content.decode()
