"""A Connect worker: the app's functions run here, with no port open (docs/connect.md).

Run it against a local engine (dev mode):

    .venv/bin/stepline dev &
    STEPLINE_DEV=1 .venv/bin/python examples/connect/worker.py
    curl -H 'content-type: application/json' http://127.0.0.1:8288/e/dev \
        -d '{"name": "reports/requested", "data": {"pages": 3}}'

or as ``.venv/bin/python -m stepline.connect examples.connect.worker:client``. SIGTERM or
Ctrl-C drains it: the report in progress finishes, no new one starts.
"""

from __future__ import annotations

import time

import stepline
import stepline.connect

client = stepline.Client("reports")


@client.function(id="build", trigger=stepline.TriggerEvent(event="reports/requested"))
async def build(ctx: stepline.Context) -> dict[str, int]:
    pages = int(ctx.event.data.get("pages", 1))
    done = 0
    for page in range(pages):
        # a long step is fine: the worker extends its lease while it runs
        done += await ctx.step.run(f"page-{page}", render_page, page)
    await ctx.step.sleep("cool-down", "1s")
    return {"pages": done}


@client.function(id="archive", trigger=stepline.TriggerEvent(event="reports/archive"))
def archive(ctx: stepline.SyncContext) -> str:  # sync functions run on a thread pool
    return ctx.step.run("move", lambda: f"archived {ctx.event.data.get('name', '?')}")


def render_page(page: int) -> int:
    time.sleep(0.5)  # stands for real work
    return 1


if __name__ == "__main__":
    stepline.connect.Worker(client, [build, archive]).run()
