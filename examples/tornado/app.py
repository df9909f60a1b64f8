"""A minimal Tornado app serving one sync and one async durable function.

Run it (dev mode, against a local engine on :8288):

    STEPLINE_DEV=1 PORT=8000 .venv/bin/python examples/tornado/app.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import tornado.web

import stepline
import stepline.tornado

client = stepline.Client("tornado-example")


@client.function(id="greet", trigger=stepline.TriggerEvent(event="example/greet"))
def greet(ctx: stepline.SyncContext) -> dict[str, Any]:
    def load_name() -> str:
        # Blocking is fine here: sync functions run on a thread pool, not on the IOLoop.
        time.sleep(float(ctx.event.data.get("delay", 0)))
        return str(ctx.event.data.get("name", "world"))

    name = ctx.step.run("load-name", load_name)
    text = ctx.step.run("compose", lambda: f"Hello, {name}!")
    return {"text": text}


@client.function(id="count", trigger=stepline.TriggerEvent(event="example/count"))
async def count(ctx: stepline.Context) -> int:
    async def numbers() -> list[int]:
        return list(range(int(ctx.event.data.get("n", 3))))

    values = await ctx.step.run("numbers", numbers)
    return await ctx.step.run("sum", lambda: sum(values))


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"app": "tornado-example", "functions": "/api/inngest"})


def make_app() -> tornado.web.Application:
    app = tornado.web.Application([(r"/", Index)])
    stepline.tornado.serve(app, client, [greet, count])
    return app


async def main() -> None:
    make_app().listen(int(os.environ.get("PORT", "8000")), address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
