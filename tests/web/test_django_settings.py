"""The web-app kit under Django: ``STEPLINE`` settings, the app config, ``default_urls``
and ``manage.py stepline``.

Django is configured once per process (``django_setup``); settings changes go through
``override_settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import django.test
import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import include, path

import stepline
import stepline.django
import stepline.web
from stepline.django.apps import SteplineConfig
from stepline.engine import _cli

from .django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)

# -- settings, the app config, default_urls -----------------------------------------------


@contextlib.contextmanager
def project(**stepline_setting: Any) -> Iterator[None]:
    """``STEPLINE`` set, then ``stepline.django`` installed (its ``ready()`` reads it)."""
    with (
        override_settings(STEPLINE=stepline_setting),
        override_settings(INSTALLED_APPS=["stepline.django"]),
    ):
        yield


CFG = {"APP_ID": "cfg", "DEV": True, "FUNCTIONS": "tests.apps.django_kit_functions.make"}


def test_app_config_builds_one_client_per_process_from_settings() -> None:
    with project(**CFG, BASE_URL="http://127.0.0.1:8399", SERVE_ORIGIN="https://app.example"):
        assert isinstance(apps.get_app_config("stepline"), SteplineConfig)
        client = stepline.django.get_client()
        assert stepline.django.get_client() is client
        assert client.app_id == "cfg"
        assert client.settings.is_dev
        assert client.settings.api_base_url == "http://127.0.0.1:8399"
        assert client.settings.event_api_base_url == "http://127.0.0.1:8399"
        [welcome] = stepline.django.get_functions()
        assert welcome.composite_id == "cfg-welcome"
        with pytest.raises(stepline.ConfigError, match="not 'embedded'"):
            stepline.django.get_engine()
        # a separate engine: the settings' URLs are serve() for these functions
        [serve] = stepline.django.default_urls()
        assert serve.name == "stepline"
        mount(path("", include(stepline.django.default_urls())))
        inspection = django.test.Client().get("/api/inngest")
        assert inspection.status_code == 200
        assert inspection.json()["function_count"] == 1
    with project(**{**CFG, "APP_ID": "other"}):  # a new setting: a new client
        assert stepline.django.get_client() is not client
        assert stepline.django.get_client().app_id == "other"


def test_embedded_engine_from_settings_starts_on_the_first_request(tmp_path: Path) -> None:
    database = str(tmp_path / "cfg.db")
    options = {"poll_interval": 0.05}
    with project(**CFG, ENGINE="embedded", DATABASE=database, ENGINE_OPTIONS=options):
        engine = stepline.django.get_engine()
        assert engine.client is stepline.django.get_client()  # rerouted to the engine
        assert engine.database == database
        assert not engine.running  # built at startup, started by the first request
        mount(path("stepline/", include(stepline.django.default_urls())))
        listed = django.test.Client().get("/stepline/v1/functions")
        assert engine.running
        assert listed.status_code == 200
        assert [f["function_id"] for f in listed.json()["data"]] == ["cfg-welcome"]
        dashboard = django.test.Client().get("/stepline/")
        assert dashboard.status_code == 200
        assert dashboard["content-type"].startswith("text/html")
        handle = stepline.django.get_client().start_sync("welcome", {"name": "Di"})
        assert handle.result(timeout=20) == "Welcome, Di!"
        proxied = django.test.Client().get(f"/stepline/v1/runs/{handle.run_id}")
        assert proxied.json()["data"]["status"] == "Completed"
    assert not engine.running  # the setting changed: the runtime stopped its engine


def test_engine_urls_proxy_under_async_views(tmp_path: Path) -> None:
    database = str(tmp_path / "cfg.db")
    # Django's AsyncClient always sends Host: testserver, not a loopback name
    public = {"allow_public_bind": True}
    with project(**CFG, ENGINE="embedded", DATABASE=database, ENGINE_OPTIONS=public):
        urls = stepline.django.engine_urls(async_mode=True)
        assert inspect.iscoroutinefunction(urls[0].callback)
        mount(path("engine/", include(urls)))
        handle = stepline.django.get_client().start_sync("welcome", {"name": "Ed"})

        async def go() -> Any:
            response = await django.test.AsyncClient().get(f"/engine/v1/runs/{handle.run_id}")
            return response.status_code, response.json()

        handle.result(timeout=20)
        status, body = asyncio.run(go())
        assert (status, body["data"]["status"]) == (200, "Completed")


def test_a_production_embedded_engine_is_not_exposed(tmp_path: Path) -> None:
    setting = {
        **CFG,
        "DEV": False,
        "SIGNING_KEY": "signkey-prod-abcd",
        "EVENT_KEY": "ek",
        "ENGINE": "embedded",
        "DATABASE": str(tmp_path / "p.db"),
    }
    with project(**setting):
        assert stepline.django.default_urls() == []
        with pytest.raises(stepline.ConfigError, match="expose_api"):
            stepline.django.engine_urls()
    with project(**setting, EXPOSE_API=True):
        assert [p.name for p in stepline.django.default_urls()] == ["stepline-engine"]


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        (None, r"settings\.STEPLINE is not set"),
        ([("APP_ID", "x")], "must be a dict"),
        ({"DEV": True}, "needs 'APP_ID'"),
        ({"APP_ID": "x", "ENGIN": "embedded"}, r"unknown keys \['ENGIN'\]"),
        ({"APP_ID": "x", "ENGINE": "thread"}, "must be 'embedded' or None"),
        ({"APP_ID": "x", "DEV": "yes"}, "must be True or False"),
        ({"APP_ID": "x", "SIGNING_KEY": 42}, "must be a string"),
        ({"APP_ID": "x", "ENGINE_OPTIONS": []}, "must be a dict"),
        ({"APP_ID": "x", "DEV": True, "FUNCTIONS": "tests.apps.django_kit_functions.nope"}, "nope"),
        ({"APP_ID": "x", "DEV": True, "FUNCTIONS": "json.decoder"}, "list of stepline functions"),
    ],
)
def test_malformed_settings_fail_at_startup(setting: Any, error: str) -> None:
    def start() -> None:  # what SteplineConfig.ready() does when Django starts
        stepline.django.get_client()
        stepline.django.get_functions()

    with override_settings(STEPLINE=setting), pytest.raises(stepline.ConfigError, match=error):
        start()


def test_functions_are_optional_for_an_app_of_durable_endpoints_only() -> None:
    with override_settings(STEPLINE={"APP_ID": "x", "DEV": True}):
        stepline.django.get_client()
        assert stepline.django.get_functions() == []


# -- manage.py stepline --------------------------------------------------------------------


@pytest.fixture
def engine_argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The engine CLI, recording its arguments instead of serving."""
    calls: list[list[str]] = []

    def main(argv: list[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 0

    monkeypatch.setattr(_cli, "main", main)
    return calls


def test_dev_command_syncs_this_apps_serve_url(engine_argv: list[list[str]]) -> None:
    with project(**CFG, BASE_URL="http://127.0.0.1:8399", DATABASE="dev.db"):
        client = stepline.django.get_client()
        mount(path("jobs/", include([stepline.django.serve(client, [])])))
        call_command("stepline", "dev")
        call_command("stepline", "dev", "--port", "9000", "-u", "http://x:1/api", "--no-sync")
        call_command("stepline", "dev", "--no-sync", "--host", "0.0.0.0", "--allow-public")
    with project(**CFG, SERVE_ORIGIN="http://127.0.0.1:8123/"):
        mount(stepline.django.serve(stepline.django.get_client(), []))
        call_command("stepline", "dev")
    assert engine_argv == [
        # runserver's address and serve()'s reversed path; the port of BASE_URL
        ["dev", "-u", "http://127.0.0.1:8000/jobs/api/inngest", "--port", "8399", "--db", "dev.db"],
        ["dev", "-u", "http://x:1/api", "--port", "9000", "--db", "dev.db"],
        ["dev", "--host", "0.0.0.0", "--port", "8399", "--db", "dev.db", "--allow-public"],
        ["dev", "-u", "http://127.0.0.1:8123/api/inngest"],
    ]


def test_start_command_uses_the_settings_keys(engine_argv: list[list[str]]) -> None:
    keys = {"SIGNING_KEY": "signkey-prod-abcd", "SIGNING_KEY_FALLBACK": "signkey-prod-ef01"}
    production = {**CFG, "DEV": False, **keys, "EVENT_KEY": "ek", "BASE_URL": "https://e.example"}
    with project(**production):
        mount(stepline.django.serve(stepline.django.get_client(), []))
        call_command("stepline", "start", "--port", "9000")  # public origin unknown: no -u
    with project(**production, SERVE_ORIGIN="https://app.example"):
        mount(stepline.django.serve(stepline.django.get_client(), []))
        call_command("stepline", "start")
    signing = ["--signing-key", "signkey-prod-abcd", "--signing-key-fallback", "signkey-prod-ef01"]
    assert engine_argv == [
        ["start", "--port", "9000", *signing, "--event-key", "ek"],
        ["start", "-u", "https://app.example/api/inngest", *signing, "--event-key", "ek"],
    ]


def test_command_refusals(engine_argv: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        project(**CFG, ENGINE="embedded", DATABASE="x.db"),
        pytest.raises(CommandError, match="'embedded'"),
    ):
        call_command("stepline", "dev")
    with project(**CFG):
        mount()
        with pytest.raises(CommandError, match=r"no serve\(\) URL"):
            call_command("stepline", "dev")
        monkeypatch.setattr(_cli, "main", lambda argv: 2)
        with pytest.raises(CommandError, match="exited with status 2") as failed:
            call_command("stepline", "dev", "--no-sync")
        assert failed.value.returncode == 2
    assert engine_argv == []


def test_migrate_command_prepares_the_embedded_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "m.db"
    with project(**CFG, ENGINE="embedded", DATABASE=str(database)):
        call_command("stepline", "migrate")
    assert database.exists()
    assert f"stepline migrate: {database} at schema version" in capsys.readouterr().out
