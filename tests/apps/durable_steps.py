"""An app in production mode whose functions take steps, sleep and wait: the Postgres drills.

``python tests/apps/durable_steps.py PORT TRACE SIGNING_KEY ENGINE_URL``; served at
``http://127.0.0.1:PORT/api/inngest`` for engines started with ``-u`` that URL
(``ENGINE_URL``: where the app reaches the engines, a load balancer's or one node's).

Each step execution appends ``RUN_ID STEP`` to the ``TRACE`` file (one ``O_APPEND``
write), and so does each call that reaches a function's end (``end``): a test counts
step executions (a recorded step run again shows twice) and completions (a run ended
twice shows two ``end`` lines) across every engine that called the app.

- ``steps-flow`` (``drill/go``): a step, a sleep of ``data.sleep`` (default ``1s``),
  a step.
- ``steps-reply`` (``drill/ask``): a step, a wait for ``drill/reply`` with the same
  ``data.k`` (an hour at most), a step.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import uvicorn

import stepline
import stepline.asgi

APP_ID = "steps"
TRACE = os.devnull


def record(run_id: str, step: str) -> str:
    """Append one line to the trace (one ``O_APPEND`` write: whole lines from any process)."""
    fd = os.open(TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{run_id} {step}\n".encode())
    finally:
        os.close(fd)
    return step


def build(signing_key: str, engine_url: str) -> tuple[stepline.Client, list[stepline.Function]]:
    """The client and its functions."""
    client = stepline.Client(
        app_id=APP_ID,
        is_production=True,
        signing_key=signing_key,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=False,
    )

    @client.function(id="flow", trigger=stepline.TriggerEvent(event="drill/go"))
    async def flow(ctx: stepline.Context) -> list[str]:
        first = await ctx.step.run("s0", record, ctx.run_id, "s0")
        data = ctx.event.data
        await ctx.step.sleep("nap", data.get("sleep", "1s") if isinstance(data, Mapping) else "1s")
        second = await ctx.step.run("s1", record, ctx.run_id, "s1")
        record(ctx.run_id, "end")
        return [first, second]

    @client.function(id="reply", trigger=stepline.TriggerEvent(event="drill/ask"))
    async def reply(ctx: stepline.Context) -> Any:
        await ctx.step.run("s0", record, ctx.run_id, "s0")
        answer = await ctx.step.wait_for_event(
            "answer", event="drill/reply", timeout="1h", if_exp="async.data.k == event.data.k"
        )
        await ctx.step.run("s1", record, ctx.run_id, "s1")
        record(ctx.run_id, "end")
        return None if answer is None else answer.data

    return client, [flow, reply]


def main() -> None:
    global TRACE
    port, TRACE, signing_key, engine_url = int(sys.argv[1]), *sys.argv[2:5]
    client, functions = build(signing_key, engine_url)
    app = stepline.asgi.serve(client, functions)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
