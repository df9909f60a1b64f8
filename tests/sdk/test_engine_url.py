"""What a user gets with no engine configured, and errors that name the engine's URL.

Production mode has no default engine: ``serve`` and every call that needs the engine
refuse with one line naming the choices, while a client only used with an embedded
engine needs nothing. A network error names the URL it tried. The CLI resolves its URL
as the SDK does (``STEPLINE_DEV`` included) and says which key a 401 wants.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import flask
import pytest
import starlette.applications
from typing_extensions import Unpack

import stepline
import stepline.flask
import stepline.starlette
from stepline import _errors, _settings
from stepline._api import runs as _runs
from stepline._api import sender
from stepline._api.run_info import ManagementError
from stepline._comm import app_sync
from stepline._settings import ClientSettings
from stepline._transport import effects
from stepline.engine._cli import relay
from stepline.engine._cli.commands import main
from stepline.outbox import _relay_deliver
from tests._support import refusing
from tests._support.stub_server import StubServer

CHOICES = ("STEPLINE_DEV=1", "STEPLINE_API_BASE_URL=", "https://api.inngest.com")


def production_client(**settings: Unpack[ClientSettings]) -> stepline.Client:
    return stepline.Client("shop", environ={}, **settings)  # STEPLINE_DEV unset


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="hello", trigger=stepline.TriggerEvent(event="shop/hello"))
    def hello(ctx: stepline.SyncContext) -> str:
        return "hi"

    return [hello]


def assert_names_the_choices(raised: pytest.ExceptionInfo[BaseException]) -> None:
    message = str(raised.value)
    assert "no engine URL in production mode" in message
    assert "\n" not in message
    for choice in CHOICES:
        assert choice in message


# --- production mode with no engine URL ----------------------------------------------


def test_serve_refuses_with_the_choices() -> None:
    client = production_client()  # building the client alone is fine
    app = starlette.applications.Starlette()
    with pytest.raises(_errors.ConfigError) as raised:
        stepline.starlette.serve(app, client, functions(client))
    assert str(raised.value).startswith("serve (starlette): ")
    assert_names_the_choices(raised)
    assert client.settings.api_base_url == _settings.NO_ENGINE  # never Inngest Cloud


def test_sending_and_managing_runs_refuse_before_any_request() -> None:
    client = production_client()
    with pytest.raises(_errors.ConfigError) as raised:
        client.send_sync(stepline.Event(name="shop/hello"))
    assert str(raised.value).startswith("send: ")
    assert_names_the_choices(raised)
    with pytest.raises(_errors.ConfigError) as raised:
        client.list_runs_sync()
    assert str(raised.value).startswith("GET /v1/runs: ")
    assert_names_the_choices(raised)


def test_an_embedded_engine_needs_no_url(tmp_path: Path) -> None:
    client = production_client(signing_key="signkey-prod-" + "ab" * 16)
    app = flask.Flask("shop")
    stepline.flask.serve(
        app, client, functions(client), engine="embedded", database=str(tmp_path / "e.db")
    )
    assert client.settings.api_base_url != _settings.NO_ENGINE  # routed to the engine


def test_inngest_cloud_named_keeps_its_event_api() -> None:
    client = production_client(api_base_url="https://api.inngest.com")
    assert client.settings.event_api_base_url == "https://inn.gs"
    client.settings.require_engine("send")


# --- network errors name the URL -------------------------------------------------------


def test_an_unreachable_engine_is_named_by_send_and_by_run_calls() -> None:
    client = production_client(api_base_url=refusing.url())
    once = dataclasses.replace(client.settings, send_max_attempts=1)
    transport = client.connection.sync_transport
    with pytest.raises(_errors.SendEventError) as sent:
        sender.send_sync(transport, once, [stepline.Event(name="shop/hello")])
    assert f"event API at {refusing.url()} unreachable" in str(sent.value)
    with pytest.raises(ManagementError) as managed:
        client.list_runs_sync()
    assert f"engine at {refusing.url()} unreachable" in str(managed.value)


def test_unreachable_run_state_names_the_url() -> None:
    failed = effects.HttpResponse(0, {}, b"", error="connection refused")
    with pytest.raises(_errors.RunStateUnavailableError) as raised:
        app_sync._run_state(failed, "batch", "http://engine.test/v0/runs/01RUN")
    assert "http://engine.test/v0/runs/01RUN/batch" in str(raised.value)
    assert "connection refused" in str(raised.value)


def test_the_outbox_relay_names_the_engine_it_could_not_reach() -> None:
    deliverer = _relay_deliver.HttpDeliverer(refusing.url(), event_key="secret-key")
    try:
        row = '{"events": [{"name": "shop/hello"}], "seed": "1,AAAAAAAAAAAAAA=="}'
        delivered = deliverer.deliver("event", row)
    finally:
        deliverer.close()
    assert delivered.outcome is _relay_deliver.DeliveryOutcome.UNAVAILABLE
    assert f"could not reach the engine at {refusing.url()}: " in (delivered.note or "")
    assert "secret-key" not in (delivered.note or "")


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def bare_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("STEPLINE_", "INNGEST_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_cli_reads_stepline_dev_as_the_sdk_does(
    bare_environ: pytest.MonkeyPatch, stub_server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stub_server.answer = lambda _request: (200, {"data": [], "metadata": {}})
    bare_environ.setenv("STEPLINE_DEV", stub_server.url)
    assert main(["runs", "list", "--json"]) == 0
    assert [r["path"].split("?")[0] for r in stub_server.requests] == ["/v1/runs"]
    bare_environ.setenv("STEPLINE_DEV", "0")  # production, and no URL: the choices
    assert main(["runs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stepline runs: no engine URL in production mode: ")
    assert "(or --url)" in err
    bare_environ.setenv("STEPLINE_BASE_URL", stub_server.url)
    assert main(["runs", "list"]) == 0
    assert len(stub_server.requests) == 2


@pytest.mark.slow
def test_cli_401_names_the_key_to_pass(
    bare_environ: pytest.MonkeyPatch, stub_server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stub_server.answer = lambda _request: (401, {"error": "missing or invalid Authorization"})
    assert main(["runs", "list", "--url", stub_server.url]) == 1
    err = capsys.readouterr().err
    assert "--signing-key or STEPLINE_SIGNING_KEY" in err
    assert main(["send", "shop/hello", "--url", stub_server.url]) == 1
    err = capsys.readouterr().err
    assert "--event-key or STEPLINE_EVENT_KEY" in err


def test_cli_flows_refuse_without_an_engine() -> None:
    settings = _settings.resolve(app_id="cli", environ={})
    with pytest.raises(_errors.ConfigError):
        next(_runs.get_flow(settings, "01RUN"))


def test_the_relay_finds_its_engine_as_the_sdk_does() -> None:
    args = argparse.Namespace(engine=None, event_key=None, signing_key=None)
    found = relay._engine_settings(args, {"STEPLINE_DEV": "http://engine.test:9000"})
    assert found.api_base_url == "http://engine.test:9000"
    assert relay._engine_settings(args, {}).api_base_url == _settings.DEV_BASE_URL
    with pytest.raises(_errors.ConfigError, match=r"\(or --engine\)"):
        relay._engine_settings(args, {"STEPLINE_DEV": "0"})
    explicit = {"STEPLINE_DEV": "0", "STEPLINE_ENGINE_URL": "https://e.example"}
    assert relay._engine_settings(args, explicit).api_base_url == "https://e.example"
