"""A FastAPI app with durable endpoints on an embedded engine, for the endpoint tests.

Importable (``build(database)``) and runnable as a process (``python -m
tests.endpoints.fastapi_durable_app PORT DATABASE MARKERS``) for the crash test: each
step appends its name to MARKERS; step "c" blocks forever on its first run in a process
started with ``BLOCK=1``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import fastapi

import stepline
import stepline.fastapi
import stepline.web
from stepline.embedded import EmbeddedEngine


def build(database: str, markers: Path | None = None, app_id: str = "durable") -> fastapi.FastAPI:
    """The app: ``POST /three/{oid}`` (3 steps), ``POST /nap`` (a sleep), run routes at /api."""
    client = stepline.Client(app_id, is_production=False, environ={})

    def mark(name: str) -> str:
        if markers is not None:
            with markers.open("a") as out:
                out.write(name + "\n")
        return name

    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.post("/three/{oid}")
    @stepline.fastapi.durable(client, run_routes="/api")
    async def three(ctx: stepline.EndpointContext) -> dict[str, Any]:
        a = await ctx.step.run("a", mark, "a")
        b = await ctx.step.run("b", mark, "b")

        def c() -> str:
            if os.environ.get("BLOCK") == "1":
                mark("c-started")
                time.sleep(3600)
            return mark("c")

        c_value = await ctx.step.run("c", c)
        return {"steps": [a, b, c_value], "oid": ctx.request.path_params["oid"]}

    @app.post("/nap")
    @stepline.fastapi.durable(client, run_routes="/api")
    def nap(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        first = ctx.step.run("first", mark, "first")
        ctx.step.sleep("nap", dt.timedelta(seconds=1))
        then = ctx.step.run("then", mark, "then")
        return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})

    functions = [three.endpoint.function, nap.endpoint.function]
    engine = EmbeddedEngine(client, [], database=database, poll_interval=0.05, lease_seconds=2)
    stepline.fastapi.serve(app, client, [], engine=engine)
    kit = stepline.fastapi.runs_router(client, functions, authorize=stepline.web.allow_all)
    app.include_router(kit, prefix="/api")
    return app


if __name__ == "__main__":
    import uvicorn

    port, database, markers = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    uvicorn.run(build(database, markers), host="127.0.0.1", port=port, log_level="warning")
