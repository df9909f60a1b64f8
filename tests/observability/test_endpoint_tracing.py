"""A durable endpoint's run continues the trace of the web request that started it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import stepline
from stepline._endpoints.endpoint import Endpoint
from stepline._transport import asgi_call, effects, performers
from stepline._webkit.routes import WebRequest
from stepline.engine import Engine
from stepline.engine._http.api import build_app

from .conftest import Otel, arun, dev_client, running, settings

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_the_run_continues_the_request_s_traceparent(tmp_path: Path, otel: Otel) -> None:
    client = dev_client()

    async def pay(ctx: stepline.EndpointContext) -> str:
        return await ctx.step.run("charge", lambda: "charged")

    endpoint = Endpoint(client, pay)

    async def scenario() -> str:
        engine = Engine(settings(tmp_path), tracer_provider=otel.provider)
        async with running(engine, [(client, [])]):
            api = build_app(engine)

            class ToEngine(performers.AsyncTransport):  # the client's calls go in-process
                async def request(self, request: effects.HttpRequest) -> effects.HttpResponse:
                    return await asgi_call.call(api, request)

            client.connection.async_transport = ToEngine()
            client.connection.settings = dataclasses.replace(
                client.settings, api_base_url="http://127.0.0.1"
            )
            traceparent = f"00-{TRACE}-{PARENT}-01"
            web = WebRequest(
                "POST", "/pay", {}, b"", native=None, headers={"traceparent": traceparent}
            )
            reply = await endpoint.handle_async(web)
            assert reply.status == 200, reply.body
            return reply.headers["x-stepline-run-id"]

    arun(scenario())
    [run_span] = otel.wait_for("stepline.run")
    assert f"{run_span.context.trace_id:032x}" == TRACE
    assert run_span.parent is not None
    assert f"{run_span.parent.span_id:016x}" == PARENT
