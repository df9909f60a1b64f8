"""The outbox tests' fixtures: a fresh database of each dialect, and the shop on a real engine.

URLs come from ``STEPLINE_TEST_POSTGRES_URL`` and ``STEPLINE_TEST_MYSQL_URL``; under
``CI=true`` a missing server fails the test, elsewhere it skips. ``Database`` and ``Shop``
are in ``tests/_support`` (``outbox_db``, ``outbox_shop``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from tests._support.engines import FAST
from tests._support.outbox_db import DIALECTS, Database, fresh
from tests._support.outbox_shop import Shop, shop_functions


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of each dialect in turn (no outbox table yet)."""
    with fresh(request.param, tmp_path) as db:
        yield db


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """The shop app and its embedded engine (temp SQLite), with an HTTP client on its API."""
    client = stepline.Client(app_id="shop", is_production=False)
    engine = EmbeddedEngine(
        client, shop_functions(client), database=str(tmp_path / "engine.db"), **FAST
    )
    engine.start()
    http = httpx.Client(
        transport=httpx.WSGITransport(app=engine.wsgi_app()),
        base_url="http://127.0.0.1",
        headers={"x-stepline-csrf": "1"},
    )
    try:
        yield Shop(client, engine, http)
    finally:
        http.close()
        engine.stop()
        client.close()
