"""A Flask app with durable routes on an embedded engine, for the Flask endpoint tests.

Importable (``build(database, markers)``) and runnable as a process (``python -m
tests.endpoints.flask_durable_app PORT DATABASE MARKERS``) for the crash test: each step
appends its name to MARKERS (with the run id); step "c" writes ``c-started`` and blocks
forever in a process started with ``BLOCK=1``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import werkzeug.serving

import stepline
import stepline.flask
import stepline.web
from stepline.embedded import EmbeddedEngine


@dataclass
class Built:
    app: flask.Flask
    client: stepline.Client
    engine: EmbeddedEngine
    views: dict[str, Any]


def build(database: str, markers: Path, app_id: str = "flask-durable") -> Built:
    """``POST /orders/<oid>`` (3 steps), ``POST /nap`` (a sleep), ``POST /made/<oid>``
    (an ``EndpointResponse``), ``POST /small`` (max_body=16); the run routes at /api."""
    client = stepline.Client(app_id, is_production=False, environ={})

    def mark(name: str, run_id: str) -> str:
        with markers.open("a") as out:
            out.write(f"{name} {run_id}\n")
        return name

    app = flask.Flask(__name__)

    @app.post("/orders/<oid>")
    @stepline.flask.durable(client, run_routes="/api")
    def orders(ctx: stepline.SyncEndpointContext) -> dict[str, Any]:
        a = ctx.step.run("a", mark, "a", ctx.run_id)
        b = ctx.step.run("b", mark, "b", ctx.run_id)

        def c() -> str:
            if os.environ.get("BLOCK") == "1":
                mark("c-started", ctx.run_id)
                time.sleep(3600)
            return mark("c", ctx.run_id)

        return {
            "steps": [a, b, ctx.step.run("c", c)],
            "oid": ctx.request.path_params["oid"],
            "sent": ctx.request.json(),
            "path": ctx.request.path,
        }

    @app.post("/nap")
    @stepline.flask.durable(client, run_routes="/api")
    def nap(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        first = ctx.step.run("first", mark, "first", ctx.run_id)
        ctx.step.sleep("nap", dt.timedelta(seconds=1))
        then = ctx.step.run("then", mark, "then", ctx.run_id)
        return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})

    @app.post("/made/<int:oid>")
    @stepline.flask.durable(client, id="made", run_routes="/api")
    def made(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        oid = ctx.request.path_params["oid"]
        ctx.step.run("make", mark, "make", ctx.run_id)
        return stepline.EndpointResponse(
            f"order {oid} made", status=201, headers={"x-order": str(oid)}
        )

    @app.post("/small")
    @stepline.flask.durable(client, max_body=16)
    def small(ctx: stepline.SyncEndpointContext) -> dict[str, str]:
        return {"echo": ctx.step.run("echo", lambda: ctx.request.text)}

    views = {"orders": orders, "nap": nap, "made": made, "small": small}
    functions = [view.endpoint.function for view in views.values()]
    engine = EmbeddedEngine(client, [], database=database, poll_interval=0.05, lease_seconds=2)
    stepline.flask.serve(app, client, [], engine=engine)
    kit = stepline.flask.runs_blueprint(client, functions, authorize=stepline.web.allow_all)
    app.register_blueprint(kit, url_prefix="/api")
    return Built(app, client, engine, views)


if __name__ == "__main__":
    port, database, markers = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    built = build(database, markers)
    server = werkzeug.serving.make_server("127.0.0.1", port, built.app, threaded=True)
    server.serve_forever(poll_interval=0.05)
