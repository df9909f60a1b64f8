"""A minimal Flask app serving one sync and one async durable function.

Run it (dev mode, against a local engine on :8288):

    STEPLINE_DEV=1 .venv/bin/flask --app examples/flask/app.py run --port 8000
"""

from __future__ import annotations

import os
from typing import Any

import flask

import stepline
import stepline.flask

client = stepline.Client("flask-example")


@client.function(id="greet", trigger=stepline.TriggerEvent(event="example/greet"))
def greet(ctx: stepline.SyncContext) -> dict[str, Any]:
    name = ctx.step.run("load-name", lambda: ctx.event.data.get("name", "world"))
    text = ctx.step.run("compose", lambda: f"Hello, {name}!")
    return {"text": text}


@client.function(id="count", trigger=stepline.TriggerEvent(event="example/count"))
async def count(ctx: stepline.Context) -> int:
    async def numbers() -> list[int]:
        return list(range(int(ctx.event.data.get("n", 3))))

    values = await ctx.step.run("numbers", numbers)
    return await ctx.step.run("sum", lambda: sum(values))


app = flask.Flask(__name__)
stepline.flask.serve(app, client, [greet, count])


@app.get("/")
def index() -> dict[str, str]:
    return {"app": "flask-example", "functions": "/api/inngest"}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
