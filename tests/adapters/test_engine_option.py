"""``engine=`` means the same in every adapter: one resolver, the strictest checks.

Flask, FastAPI and Tornado each had their own resolver and they had drifted: FastAPI's
``serve`` took an ``EmbeddedEngine`` of another client, Flask ignored ``database=`` given
without an engine. These run the same cases through each adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi
import flask
import pytest
import tornado.web

import stepline
import stepline.fastapi
import stepline.flask
import stepline.tornado
from stepline.embedded import EmbeddedEngine

SERVES: dict[str, Callable[..., Any]] = {
    "fastapi": lambda c, f, **o: stepline.fastapi.serve(fastapi.FastAPI(), c, f, **o),
    "flask": lambda c, f, **o: stepline.flask.serve(flask.Flask(__name__), c, f, **o),
    "tornado": lambda c, f, **o: stepline.tornado.serve(tornado.web.Application(), c, f, **o),
}


def make(app_id: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id, is_production=False, environ={})

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="e/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return client, [noop]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EmbeddedEngine]:
    client, functions = make("mine")
    own = EmbeddedEngine(client, functions, database=str(tmp_path / "e.db"))
    try:
        yield own
    finally:
        own.stop()


@pytest.mark.parametrize("name", sorted(SERVES))
def test_an_engine_of_another_client_is_refused(name: str, engine: EmbeddedEngine) -> None:
    other, functions = make("other")
    with pytest.raises(stepline.ConfigError, match="belongs to another client"):
        SERVES[name](other, functions, engine=engine)


@pytest.mark.parametrize("name", sorted(SERVES))
def test_a_database_without_an_engine_is_refused(name: str) -> None:
    client, functions = make("plain")
    with pytest.raises(stepline.ConfigError, match="need engine='embedded'"):
        SERVES[name](client, functions, database="x.db")


@pytest.mark.parametrize("name", sorted(SERVES))
def test_a_database_with_your_own_engine_is_refused(name: str, engine: EmbeddedEngine) -> None:
    with pytest.raises(stepline.ConfigError, match="your own EmbeddedEngine"):
        SERVES[name](engine.client, engine.functions, engine=engine, database="x.db")


@pytest.mark.parametrize("name", sorted(SERVES))
def test_an_unknown_engine_is_refused(name: str) -> None:
    client, functions = make("plain")
    with pytest.raises(stepline.ConfigError, match="want 'embedded' or an EmbeddedEngine"):
        SERVES[name](client, functions, engine="sqlite")


@pytest.mark.parametrize("name", sorted(SERVES))
def test_your_own_engine_is_used_and_embedded_makes_one(
    name: str, engine: EmbeddedEngine, tmp_path: Path
) -> None:
    SERVES[name](engine.client, engine.functions, engine=engine)
    assert not engine.running, "serving starts nothing"
    client, functions = make("made")
    SERVES[name](client, functions, engine="embedded", database=str(tmp_path / "m.db"))
    assert client.settings.api_base_url == stepline.embedded.ORIGIN, "routed to the new engine"


def test_the_lifespan_checks_as_serve_does(engine: EmbeddedEngine) -> None:
    other, _ = make("other")
    with pytest.raises(stepline.ConfigError, match="belongs to another client"):
        stepline.fastapi.lifespan(other, engine=engine)
    with pytest.raises(stepline.ConfigError, match="your own EmbeddedEngine"):
        stepline.fastapi.lifespan(engine.client, engine=engine, database="x.db")
