"""The web-kit examples tested with ``stepline.testing``: each app's own routes, a ``TestEnv``.

Every example is built without its embedded engine (FastAPI: ``ORDERS_ENGINE=none``; Flask:
``STEPLINE_ENGINE = "external"``; Tornado: ``make_app(engine=None)``; Django: its settings
without ``"ENGINE"``), so the env's engine runs the functions on a virtual clock: an hour's
hold or grace period passes in milliseconds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import fastapi.testclient
import flask
import httpx
import pytest
import tornado.httpserver
import tornado.testing

import stepline
import stepline.tornado
from stepline.testing import TestEnv
from stepline.testing.plugin import EnvFactory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOUR = 3600
#: Real seconds a run with an hour's sleep may take on the virtual clock.
QUICK = 10.0


def load(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # pydantic resolves names through it
    spec.loader.exec_module(module)
    return module


# -- FastAPI: examples/fastapi_orders --------------------------------------------------------

ORDER = {
    "customer": "ada",
    "items": [{"sku": "book", "quantity": 2}, {"sku": "mug", "quantity": 1}],
}


@pytest.fixture
def fastapi_orders(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("ORDERS_ENGINE", "none")
    module = load(EXAMPLES / "fastapi_orders" / "app.py", "examples_fastapi_orders", monkeypatch)
    assert module.ENGINE is None
    return module


def test_fastapi_orders_ship_after_a_virtual_hour_and_cancel(
    fastapi_orders: ModuleType, stepline_env: EnvFactory
) -> None:
    example = fastapi_orders
    env = stepline_env(example.client, [example.process_order])
    with fastapi.testclient.TestClient(example.app) as http:
        began = time.monotonic()
        placed = http.post("/orders", json={**ORDER, "hold_seconds": HOUR})
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        start = env.now
        output = env.get_run(order_id).result_sync()
        assert time.monotonic() - began < QUICK
        assert (env.now - start).total_seconds() >= HOUR  # the hold passed, virtually
        assert output["status"] == "shipped"
        assert output["cents"] == 2 * 1250 + 800

        shown = http.get(f"/orders/{order_id}").json()
        assert shown["status"] == "Completed"
        assert [s["name"] for s in shown["steps"]] == [
            "reserve-inventory",
            "charge-payment",
            "wait-for-warehouse",
            "ship-order",
        ]
        assert shown["result"] == output

        held = http.post("/orders", json={**ORDER, "hold_seconds": HOUR}).json()["order_id"]
        env.advance_sync(HOUR / 2)  # halfway through the hold: reserved and charged
        assert http.get(f"/orders/{held}").json()["status"] == "Running"
        cancelled = http.post(f"/orders/{held}/cancel").json()
        assert cancelled == {"order_id": held, "status": "Cancelled"}
        with pytest.raises(stepline.RunCancelledError):
            env.get_run(held).result_sync()
        assert http.get(f"/orders/{held}").json()["status"] == "Cancelled"
        assert [r.run_id for r in env.runs_sync(example.process_order)] == [order_id, held]
        assert [c.step for c in env.step_calls(example.process_order, "ship-order")] == [
            "ship-order"
        ]
        assert http.get("/orders/01NOSUCHORDER").status_code == 404


def test_fastapi_orders_fail_when_the_card_is_declined(
    fastapi_orders: ModuleType, stepline_env: EnvFactory
) -> None:
    example = fastapi_orders
    env = stepline_env(example.client, [example.process_order])
    env.mock_step(example.process_order, "charge-payment", raises=ConnectionError("declined"))
    with fastapi.testclient.TestClient(example.app) as http:
        order_id = http.post("/orders", json=ORDER).json()["order_id"]
        with pytest.raises(stepline.RunFailedError):
            env.get_run(order_id).result_sync()  # every retry's backoff passes virtually
        shown = http.get(f"/orders/{order_id}").json()
    assert shown["status"] == "Failed"
    assert "declined" in str(shown["error"])
    calls = env.step_calls(example.process_order, "charge-payment")
    assert len(calls) > 1  # retried, then failed
    assert [c.attempt for c in calls] == list(range(len(calls)))
    assert all(c.mocked and isinstance(c.error, ConnectionError) for c in calls)
    assert env.step_calls(example.process_order, "ship-order") == []
    assert [c.step for c in env.step_calls(example.process_order, "reserve-inventory")] == [
        "reserve-inventory"
    ]


# -- Flask: examples/flask_orders -------------------------------------------------------------


@pytest.fixture
def flask_orders(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, flask.Flask]]:
    example = load(EXAMPLES / "flask_orders" / "app.py", "examples_flask_orders", monkeypatch)
    # "external": the functions are served, the engine is elsewhere (here: the TestEnv)
    app = example.create_app({"TESTING": True, "STEPLINE_ENGINE": "external", "ORDERS_GRACE": HOUR})
    try:
        assert app.extensions["stepline"].engine is None
        yield example, app
    finally:
        app.extensions["stepline"].close()


def test_flask_orders_charge_after_the_grace_period_or_cancel(
    flask_orders: tuple[ModuleType, flask.Flask], stepline_env: EnvFactory
) -> None:
    example, app = flask_orders
    env = stepline_env(example.ext.state(app).client, [example.process_order])
    charge = env.mock_step(example.process_order, "charge-card", returns="ch-test")
    http = app.test_client()
    order = {"customer": "ada", "items": [{"sku": "tea", "quantity": 2}]}

    began = time.monotonic()
    placed = http.post("/orders", json=order, headers={"idempotency-key": "cart-7"})
    assert placed.status_code == 201
    order_id = placed.json["order_id"]
    again = http.post("/orders", json=order, headers={"idempotency-key": "cart-7"})
    assert (again.status_code, again.json["order_id"]) == (200, order_id)
    receipt = env.get_run(order_id).result_sync()
    assert time.monotonic() - began < QUICK  # an hour's grace period, virtually
    assert receipt["total_cents"] == 900
    assert receipt["charge_id"] == "ch-test"
    shown = http.get(f"/orders/{order_id}").json
    assert shown["status"] == "Completed"
    assert shown["receipt"] == receipt
    assert shown["steps"] == dict.fromkeys(
        ["price", "reserve-stock", "grace-period", "charge-card"], "Completed"
    )

    held = http.post("/orders", json=order).json["order_id"]
    env.advance_sync(HOUR - 1)  # one second before the charge
    assert http.get(f"/orders/{held}").json["status"] == "Running"
    assert http.post(f"/orders/{held}/cancel").json == {"order_id": held, "status": "Cancelled"}
    env.advance_sync(HOUR)
    assert http.get(f"/orders/{held}").json["status"] == "Cancelled"
    assert charge.call_count == 1  # the cancelled order was never charged
    assert [c.run_id for c in env.step_calls(example.process_order, "charge-card")] == [order_id]


def test_flask_orders_with_an_unknown_product_fail_before_reserving(
    flask_orders: tuple[ModuleType, flask.Flask], stepline_env: EnvFactory
) -> None:
    example, app = flask_orders
    env = stepline_env(example.ext.state(app).client, [example.process_order])
    http = app.test_client()
    order = {"customer": "ada", "items": [{"sku": "caviar", "quantity": 1}]}
    order_id = http.post("/orders", json=order).json["order_id"]
    with pytest.raises(stepline.RunFailedError):
        env.get_run(order_id).result_sync()
    assert http.get(f"/orders/{order_id}").json["error"] == "unknown products: caviar"
    (price,) = env.step_calls(example.process_order)  # NonRetriableError: one attempt
    assert (price.step, price.mocked) == ("price", False)


# -- Tornado: examples/tornado_orders ---------------------------------------------------------


@pytest.mark.anyio
async def test_tornado_orders_over_http_with_an_async_env(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load(EXAMPLES / "tornado_orders" / "app.py", "examples_tornado_orders", monkeypatch)
    app = example.make_app(engine=None)
    assert stepline.tornado.ENGINE_SETTING not in app.settings
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        async with (
            TestEnv(example.client, [example.process_order]) as env,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):
            env.mock_step(example.process_order, "charge-card", handler=lambda: "ch_test")
            began = time.monotonic()
            placed = await http.post(
                "/orders", json={"item": "mug", "quantity": 3, "ship_after": HOUR}
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            output: dict[str, Any] = await env.get_run(order_id).result()
            assert time.monotonic() - began < QUICK  # the courier's hour, virtually
            assert output["total_cents"] == 3 * 899
            assert output["charge"] == "ch_test"
            shown = (await http.get(f"/orders/{order_id}")).json()
            assert (shown["status"], shown["result"]) == ("Completed", output)

            held = (
                await http.post("/orders", json={"item": "sofa", "quantity": 1, "ship_after": HOUR})
            ).json()["id"]
            await env.advance(60)
            assert (await http.get(f"/orders/{held}")).json()["status"] == "Running"
            cancelled = (await http.post(f"/orders/{held}/cancel")).json()
            assert cancelled == {"id": held, "status": "Cancelled"}
            await env.advance(HOUR)
            assert (await http.get(f"/orders/{held}")).json()["status"] == "Cancelled"
            ships = env.step_calls(example.process_order, "ship")
            assert [c.run_id for c in ships] == [order_id]
            charges = env.step_calls(example.process_order, "charge-card")
            assert sorted(c.run_id for c in charges) == sorted([order_id, held])
            assert all(c.mocked for c in charges)
            assert (await http.get("/orders/01NOSUCHORDER")).status_code == 404
    finally:
        server.stop()
        await server.close_all_connections()
        await stepline.tornado.shutdown(app)


# -- Django: examples/django_signup -----------------------------------------------------------


@pytest.mark.process
def test_django_signup_with_the_stepline_test_mixin(tmp_path: Path) -> None:
    case = Path(__file__).with_name("examples_django_case.py")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(case), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Ran 2 tests" in report, report
    assert report.rstrip().endswith("OK"), report
