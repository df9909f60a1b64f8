"""``stepline.testing`` drives durable endpoints through the framework's own test client.

The test env is the engine: a day-long sleep in a durable route passes on the virtual
clock, and ``mock_step`` replaces a step both inline (in the request) and on resumption.
"""

from __future__ import annotations

import datetime as dt

import fastapi
import fastapi.testclient

import stepline
import stepline.fastapi
from stepline.testing import TestEnv


def build() -> tuple[fastapi.FastAPI, stepline.Client, stepline.Function, list[str]]:
    client = stepline.Client("tenv", is_production=False, environ={})
    app = fastapi.FastAPI()
    charged: list[str] = []

    @app.post("/orders/{oid}")
    @stepline.fastapi.durable(client)
    async def order(ctx: stepline.EndpointContext) -> dict[str, object]:
        oid = ctx.request.path_params["oid"]

        def charge_card() -> str:
            charged.append(oid)
            return f"real-{oid}"

        charge = await ctx.step.run("charge", charge_card)
        if ctx.request.json().get("hold"):
            await ctx.step.sleep("hold", dt.timedelta(days=1))
        shipped = await ctx.step.run("ship", lambda: f"shipped-{oid}")
        return {"charge": charge, "shipped": shipped}

    return app, client, order.endpoint.function, charged


def test_a_route_finishes_inline_under_the_test_env() -> None:
    app, client, _fn, charged = build()
    with TestEnv(client, []), fastapi.testclient.TestClient(app) as http:
        answer = http.post("/orders/1", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"charge": "real-1", "shipped": "shipped-1"}
        assert charged == ["1"]


def test_a_day_long_sleep_passes_on_the_virtual_clock() -> None:
    app, client, fn, charged = build()
    with TestEnv(client, []) as env, fastapi.testclient.TestClient(app) as http:
        answer = http.post("/orders/2", json={"hold": True})
        assert answer.status_code == 202, answer.text
        run = env.get_run(answer.headers["x-stepline-run-id"])
        result = run.result_sync()
        assert result["json"] == {"charge": "real-2", "shipped": "shipped-2"}
        assert charged == ["2"]  # recorded inline, replayed after the sleep
        assert env.runs_sync(fn)[0].run_id == run.run_id


def test_mock_step_replaces_a_step_run_inline() -> None:
    app, client, fn, charged = build()
    with TestEnv(client, []) as env, fastapi.testclient.TestClient(app) as http:
        env.mock_step(fn, "charge", returns="mocked")
        answer = http.post("/orders/3", json={"hold": True})
        assert answer.status_code == 202
        result = env.get_run(answer.headers["x-stepline-run-id"]).result_sync()
        assert result["json"] == {"charge": "mocked", "shipped": "shipped-3"}
        assert charged == []
        calls = env.step_calls(fn, "charge")
        assert len(calls) == 1
