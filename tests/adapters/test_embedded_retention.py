"""``EmbeddedEngine`` settings in seconds take durations as the CLI does.

``retention="7d"`` (``0``/``off`` keeps everything), ``shutdown_grace="30s"``, and the
framework settings that build the engine (Flask's ``STEPLINE_ENGINE_OPTIONS``, Django's
``ENGINE_OPTIONS``, FastAPI's ``lifespan(**engine_settings)``) reach the running engine in
seconds. A value it cannot read, or a setting it does not have, is a ``ConfigError`` at
construction naming the setting and a valid value.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import flask
import pytest
from django.test import override_settings

import stepline
import stepline.django
import stepline.fastapi
import stepline.flask
from stepline.embedded import EmbeddedEngine
from tests.web.django_setup import _django  # noqa: F401 (an autouse fixture)

DAY = 86_400.0


def make() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("durations", is_production=False, environ={})

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="e/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return client, [noop]


@pytest.fixture
def built(tmp_path: Path) -> Iterator[list[EmbeddedEngine]]:
    engines: list[EmbeddedEngine] = []
    yield engines
    for engine in engines:
        engine.stop()


def embedded(built: list[EmbeddedEngine], tmp_path: Path, **settings: Any) -> EmbeddedEngine:
    client, functions = make()
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "d.db"), **settings)
    built.append(engine)
    return engine


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("7d", 7 * DAY), ("12h", 43_200.0), ("30m", 1800.0), ("2s", 2.0), ("0", 0.0), ("off", 0.0),
     (3600, 3600.0), (datetime.timedelta(days=2), 2 * DAY)],
)  # fmt: skip
def test_retention_takes_the_clis_durations(
    built: list[EmbeddedEngine], tmp_path: Path, given: object, seconds: float
) -> None:
    engine = embedded(built, tmp_path, retention=given)
    assert engine.engine.settings.retention == seconds  # the running engine's setting


def test_other_durations_take_seconds_or_durations(
    built: list[EmbeddedEngine], tmp_path: Path
) -> None:
    engine = embedded(
        built, tmp_path, shutdown_grace="1m30s", call_timeout="15m", poll_interval="0.05"
    )
    settings = engine.engine.settings
    assert (settings.shutdown_grace, settings.call_timeout) == (90.0, 900.0)
    assert settings.poll_interval == 0.05


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"retention": "7 days"}, r"retention: invalid duration '7 days'.*retention='7d'"),
        ({"retention": "-1d"}, r"retention.*retention='7d'"),
        ({"retention": -5}, r"setting retention: got -5; .*retention='7d'"),
        ({"retention": True}, r"setting retention: got True"),
        ({"shutdown_grace": "soon"}, r"setting shutdown_grace: invalid duration 'soon'.*'30s'"),
        ({"shutdown_grace": float("nan")}, r"setting shutdown_grace: got nan"),
        ({"call_timeout": [1]}, r"setting call_timeout: got \[1\].*'15m'"),
        ({"retension": "7d"}, r"unknown embedded engine settings \['retension'\]"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_setting_and_a_valid_value(
    tmp_path: Path, settings: dict[str, Any], error: str
) -> None:
    client, functions = make()
    with pytest.raises(stepline.ConfigError, match=error):
        EmbeddedEngine(client, functions, database=str(tmp_path / "d.db"), **settings)


def test_flask_engine_options_take_durations(tmp_path: Path) -> None:
    client, functions = make()
    app = flask.Flask(__name__)
    app.config.update(
        STEPLINE_ENGINE="embedded",
        STEPLINE_DATABASE_URL=str(tmp_path / "f.db"),
        STEPLINE_ENGINE_OPTIONS={"retention": "12h", "shutdown_grace": "10s"},
    )
    stepline.flask.Stepline(app, client=client, functions=functions)
    engine = app.extensions["stepline"].engine
    try:
        assert engine.engine.settings.retention == 43_200.0
        assert engine.engine.settings.shutdown_grace == 10.0
    finally:
        engine.stop()
    bad = flask.Flask(__name__)
    bad.config.update(STEPLINE_ENGINE="embedded", STEPLINE_ENGINE_OPTIONS={"retention": "a week"})
    with pytest.raises(stepline.ConfigError, match="retention='7d'"):
        stepline.flask.Stepline(bad, client=make()[0], functions=functions)


def test_django_engine_options_take_durations(tmp_path: Path) -> None:
    setting = {
        "APP_ID": "cfg",
        "DEV": True,
        "FUNCTIONS": "tests.apps.django_kit_functions.make",
        "ENGINE": "embedded",
        "DATABASE": str(tmp_path / "dj.db"),
    }
    with override_settings(STEPLINE={**setting, "ENGINE_OPTIONS": {"retention": "30m"}}):
        engine = stepline.django.get_engine()
        assert engine.engine.settings.retention == 1800.0
    assert not engine.running  # the setting changed: the runtime stopped it
    with (
        override_settings(STEPLINE={**setting, "ENGINE_OPTIONS": {"retention": "soon"}}),
        pytest.raises(stepline.ConfigError, match=r"retention.*retention='7d'"),
    ):
        stepline.django.get_engine()


def test_fastapi_lifespan_settings_take_durations(tmp_path: Path) -> None:
    client, functions = make()
    app = fastapi.FastAPI(
        lifespan=stepline.fastapi.lifespan(
            client,
            functions=functions,
            engine="embedded",
            database=str(tmp_path / "l.db"),
            retention="12h",
            shutdown_grace="5s",
        )
    )
    with fastapi.testclient.TestClient(app):
        settings = app.state.stepline_engine.engine.settings
        assert (settings.retention, settings.shutdown_grace) == (43_200.0, 5.0)
    bad = fastapi.FastAPI(
        lifespan=stepline.fastapi.lifespan(
            make()[0], functions=functions, engine="embedded", retention="a week"
        )
    )
    with (
        pytest.raises(stepline.ConfigError, match="retention='7d'"),
        fastapi.testclient.TestClient(bad),
    ):
        pass  # refused at startup, before the engine opens anything
