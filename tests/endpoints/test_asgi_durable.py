"""What only bare ASGI durable apps do: ``stepline.asgi.durable``.

What every framework does is in ``test_endpoint_contract.py``. Here: Starlette's router
in front of the apps (a ``Mount``'s path parameter and full path, a ``Route``'s methods),
through its ``TestClient`` and behind uvicorn (``tests/apps/durable_asgi.py`` on
``harness.open_site``); then an app alone, with no router: any path, no path parameters,
and suspended and replayed under httpx's ``ASGITransport``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import starlette.testclient

import stepline
import stepline.asgi
from tests.apps import durable_asgi
from tests.apps.durable_shop import Shop

from .harness import open_site


@pytest.mark.parametrize("variant", ["asgi-testclient", "asgi-uvicorn"])
def test_an_endpoint_response_under_a_mount_sets_status_and_headers(
    variant: str, tmp_path: Path
) -> None:
    with open_site(variant, tmp_path) as site:
        got = site.request("GET", "/seen/acme/orders/7?color=red")
        assert got.status == 201, got.body
        assert got.headers["x-made"] == "yes"
        assert got.json == {
            "method": "GET",
            "path": "/seen/acme/orders/7",  # the full path, the mount's included
            "query": {"color": "red"},
            "params": {"shop": "acme"},  # the Mount's
        }
        posted = site.post("/seen/a%20b/x")
        assert posted.status == 201, posted.body
        assert posted.json["params"] == {"shop": "a b"}
        assert posted.headers["x-stepline-run-id"] != got.headers["x-stepline-run-id"]
        assert site.request("GET", "/orders/1").status == 405  # the Route's methods
        assert site.shop.marks() == []
        assert site.runs("orders") == []


# -- the app alone -----------------------------------------------------------------------


@pytest.fixture
def alone(tmp_path: Path) -> Iterator[tuple[dict[str, stepline.asgi.DurableApp], Shop]]:
    shop = Shop("asgi-alone", str(tmp_path / "e.db"), tmp_path / "marks", is_async=False)
    try:
        yield durable_asgi.endpoints(shop), shop
    finally:
        shop.engine.stop()


def test_the_app_alone_answers_at_any_path_with_no_path_params(
    alone: tuple[dict[str, stepline.asgi.DurableApp], Shop],
) -> None:
    apps, shop = alone
    with starlette.testclient.TestClient(apps["seen"]) as http:  # lifespan answered too
        got = http.put("/any/where", params={"q": "1"}, content=b"{}")
        assert got.status_code == 201, got.text
        assert got.headers["x-made"] == "yes"
        seen = {"method": "PUT", "path": "/any/where", "query": {"q": "1"}, "params": {}}
        assert got.json() == seen
        refused = pytest.raises(ValueError, match="stepline serves http, not 'websocket'")
        with refused, http.websocket_connect("/ws"):
            pass
    with starlette.testclient.TestClient(apps["orders"]) as http:
        answer = http.post("/", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json()["steps"] == ["a", "b", "c"]
        assert answer.json()["oid"] is None
        assert shop.marks() == ["a", "b", "c"]


@pytest.mark.slow
def test_the_app_alone_under_httpx_suspends_and_the_engine_finishes_the_run(
    alone: tuple[dict[str, stepline.asgi.DurableApp], Shop],
) -> None:
    apps, shop = alone
    nap = apps["nap"]

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=nap)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = await http.post("/nap", json={}, headers={"idempotency-key": "k"})
            assert first.status_code == 202, first.text
            handle = nap.endpoint.client.get_run(first.headers["x-stepline-run-id"])
            assert await handle.result(timeout=10) == {
                "status": 201,
                "headers": {"x-nap": "1", "content-type": "application/json"},
                "json": {"ran": ["first", "then"]},
            }
            return first, await http.post("/nap", json={}, headers={"idempotency-key": "k"})

    first, replayed = asyncio.run(scenario())
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["x-stepline-run-id"] == first.headers["x-stepline-run-id"]
    assert replayed.headers["idempotent-replayed"] == "true"
    assert shop.marks() == ["first", "then"]


def test_the_decorator_keeps_the_endpoint() -> None:
    client = stepline.Client("asgi-durable", is_production=False, environ={})

    @stepline.asgi.durable(client, retries=2)
    def pay_order(ctx: stepline.SyncEndpointContext) -> str:
        return "paid"

    assert isinstance(pay_order, stepline.asgi.DurableApp)
    assert pay_order.endpoint.function.id == "pay-order"
    assert pay_order.endpoint.client is client
