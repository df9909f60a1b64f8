"""The app's own routes start functions through the client; the test sees them complete."""

from __future__ import annotations

import datetime as dt
from typing import Any

import fastapi
import fastapi.testclient
import flask

import stepline
from stepline.testing import TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("web")


@client.function(id="process-order", trigger=stepline.TriggerEvent(event="shop/order.placed"))
async def process_order(ctx: stepline.Context) -> dict[str, Any]:
    order = ctx.event.data["order"]
    await ctx.step.run("reserve", lambda: f"reserved {order}")
    await ctx.step.sleep("wait-for-shipping", dt.timedelta(days=2))
    shipped = await ctx.step.run("ship", lambda: f"shipped {order}")
    return {"order": order, "status": shipped}


@client.function(id="welcome", trigger=stepline.TriggerEvent(event="shop/user.signup"))
def welcome(ctx: stepline.SyncContext) -> str:
    ctx.step.sleep("a-day-later", dt.timedelta(days=1))
    return ctx.step.run("email", lambda: f"emailed {ctx.event.data['email']}")


FUNCTIONS = [process_order, welcome]


def flask_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.post("/orders/<int:order>")
    def place(order: int) -> dict[str, Any]:
        handle = client.start_sync(process_order, {"order": order})
        return {"run_id": handle.run_id}

    @app.get("/runs/<run_id>")
    def status(run_id: str) -> dict[str, Any]:
        return client.get_run_sync(run_id).describe().to_json()

    @app.post("/signup")
    def signup() -> dict[str, Any]:
        body = flask.request.get_json()
        ids = client.send_sync(stepline.Event(name="shop/user.signup", data=body))
        return {"ids": ids}

    return app


def fastapi_app() -> fastapi.FastAPI:
    app = fastapi.FastAPI()

    @app.post("/orders/{order}")
    async def place(order: int) -> dict[str, Any]:
        handle = await client.start(process_order, {"order": order})
        return {"run_id": handle.run_id}

    @app.get("/runs/{run_id}")
    async def status(run_id: str) -> dict[str, Any]:
        return (await client.get_run(run_id).describe()).to_json()

    @app.post("/signup")
    async def signup(body: dict[str, str]) -> dict[str, Any]:
        return {"ids": await client.send(stepline.Event(name="shop/user.signup", data=body))}

    return app


def test_a_flask_route_starts_a_run_and_the_test_sees_it_complete() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        web = flask_app().test_client()
        run_id = web.post("/orders/7").get_json()["run_id"]
        env.settle_sync()  # the run goes as far as it can without time moving
        assert web.get(f"/runs/{run_id}").get_json()["status"] == "Running"
        run = env.get_run(run_id)
        assert run.result_sync() == {"order": 7, "status": "shipped 7"}
        assert env.now == START + dt.timedelta(days=2)
        assert web.get(f"/runs/{run_id}").get_json()["status"] == "Completed"


def test_a_flask_route_sends_an_event() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        web = flask_app().test_client()
        assert web.post("/signup", json={"email": "a@example.com"}).status_code == 200
        (run,) = env.runs_sync(welcome)
        assert run.result_sync() == "emailed a@example.com"


def test_a_fastapi_route_starts_a_run_and_the_test_sees_it_complete() -> None:
    with (
        TestEnv(client, FUNCTIONS, start=START) as env,
        fastapi.testclient.TestClient(fastapi_app()) as web,
    ):
        run_id = web.post("/orders/9").json()["run_id"]
        assert env.get_run(run_id).result_sync() == {"order": 9, "status": "shipped 9"}
        assert web.get(f"/runs/{run_id}").json()["status"] == "Completed"
        assert web.post("/signup", json={"email": "b@example.com"}).status_code == 200
        (signup,) = env.runs_sync(welcome)
        assert signup.result_sync() == "emailed b@example.com"


def test_the_client_is_given_back_when_the_env_closes() -> None:
    before = client.settings
    transports = (client.connection.sync_transport, client.connection.async_transport)
    with TestEnv(client, FUNCTIONS):
        assert client.settings.api_base_url == "http://stepline.testing"
    assert client.settings is before
    assert (client.connection.sync_transport, client.connection.async_transport) == transports
