"""A durable endpoint's run continues the trace of the web request that started it."""

from __future__ import annotations

from pathlib import Path

import stepline
from stepline._endpoints.endpoint import Endpoint
from stepline._webkit.routes import WebRequest
from stepline.engine import Engine
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import fast_settings, running
from tests._support.in_process import to_engine
from tests._support.otel import Otel

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_the_run_continues_the_request_s_traceparent(tmp_path: Path, otel: Otel) -> None:
    client = dev_client("obs")

    async def pay(ctx: stepline.EndpointContext) -> str:
        return await ctx.step.run("charge", lambda: "charged")

    endpoint = Endpoint(client, pay)

    async def scenario() -> str:
        engine = Engine(fast_settings(tmp_path / "engine.db"), tracer_provider=otel.provider)
        async with running(engine, apps=[(client, [])]):
            to_engine(client, build_app(engine))
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
