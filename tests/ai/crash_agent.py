"""A durable agent in a process of its own, for the SIGKILL tests (``test_crash.py``).

``python -m tests.ai.crash_agent DATABASE WORKDIR sync|async`` runs the embedded engine on
DATABASE (an SQLite file or a Postgres URL; a 1 s lease) with one function: a durable
agent whose streaming function model first streams a sentence and calls the tool
``lookup``, then, given its result, streams the answer. The first life starts the run
(its id in WORKDIR/run); every life waits for the run to end and then writes its
output, steps and stream to WORKDIR/result.json.

Every model request and tool call appends a line to WORKDIR/log (``model-begin <n>``,
``token <n> <i>``, ``model-end <n>``, ``tool-begin``, ``tool-end``, each with the pid).
The client keeps its default checkpointing (steps committed with the call's answer): a
model request's and a tool call's steps are committed as they complete all the same.
``SLOW=model`` streams the first request one token every 0.2 s (time to kill it
mid-response); ``SLOW=tool`` makes the tool sleep a minute (time to kill it mid-call).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

import stepline
from stepline.ai import DurableAgent
from stepline.embedded import EmbeddedEngine

FIRST = ["Let ", "me ", "look ", "that ", "up ", "for ", "you, ", "one ", "moment."]
ANSWER = ["The ", "answer ", "is ", "42."]


def main(database: str, workdir: Path, face: str) -> None:
    log_path = workdir / "log"
    slow = os.environ.get("SLOW", "")

    def log(*words: object) -> None:
        with log_path.open("a") as out:
            out.write(" ".join(map(str, (*words, os.getpid()))) + "\n")
            out.flush()
            os.fsync(out.fileno())

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        n = sum(isinstance(m, ModelResponse) for m in messages) + 1
        log("model-begin", n)
        for i, token in enumerate(FIRST if n == 1 else ANSWER):
            log("token", n, i)
            await asyncio.sleep(0.2 if n == 1 and slow == "model" else 0.01)
            yield token
        if n == 1:
            yield {0: DeltaToolCall(name="lookup", json_args='{"q": "answer"}', tool_call_id="c1")}
        log("model-end", n)

    inner = Agent(FunctionModel(stream_function=stream), name="crashy")

    @inner.tool_plain
    async def lookup(q: str) -> str:
        log("tool-begin")
        if slow == "tool":
            await asyncio.sleep(60)
        log("tool-end")
        return "42"

    agent = DurableAgent(inner)
    client = stepline.Client("ai-crash", is_production=False, environ={})

    async def ask(ctx: stepline.Context) -> str:
        result = await agent.on(ctx).run("What is the answer?")
        return result.output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        return agent.on(ctx).run_sync("What is the answer?").output

    trigger = stepline.TriggerEvent(event="ai/ask")
    handler = ask if face == "async" else ask_sync
    fn = client.function(id="ask", trigger=trigger, retries=5)(handler)
    engine = EmbeddedEngine(client, [fn], database=database, poll_interval=0.05, lease_seconds=1)
    engine.start()
    run_file = workdir / "run"
    if not run_file.exists():
        run_file.write_text(client.start_sync(fn, {}).run_id)
    handle = client.get_run_sync(run_file.read_text())
    deadline = time.monotonic() + 60
    output = handle.result(timeout=60)
    result = {
        "output": output,
        "steps": [step.name for step in handle.steps()],
        "stream": [m.data for m in handle.stream(topic="ai")],
        "waited": round(60 - (deadline - time.monotonic()), 2),
    }
    (workdir / "result.json").write_text(json.dumps(result))
    engine.stop()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
