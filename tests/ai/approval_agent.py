"""A durable agent waiting for an approval in a process of its own (``test_approvals_process``).

``python -m tests.ai.approval_agent DATABASE WORKDIR sync|async ask|answer`` runs the
embedded engine on DATABASE (an SQLite file or a Postgres URL) with one function: a
durable agent whose model asks to refund 500 cents (a tool that needs approval), then
says what the tool answered.

- ``ask`` starts the run, waits until its approval is pending, writes the approval's id
  to WORKDIR/approval and waits to be killed.
- ``answer`` approves it through the client (edited arguments, a principal), waits for
  the run to end and writes its output, steps and the decision to WORKDIR/result.json.

Every model request and tool call appends a line to WORKDIR/log (``model <n>``,
``tool <cents>``), each with the pid.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent
from stepline.embedded import EmbeddedEngine


def main(database: str, workdir: Path, face: str, part: str) -> None:
    def log(*words: object) -> None:
        with (workdir / "log").open("a") as out:
            out.write(" ".join(map(str, (*words, os.getpid()))) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        log("model", sum(isinstance(m, ModelResponse) for m in messages) + 1)
        answered = [
            part.content
            for message in messages
            for part in getattr(message, "parts", ())
            if isinstance(part, ToolReturnPart)
        ]
        if answered:
            return ModelResponse(parts=[TextPart(f"tool said: {answered[0]}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"cents": 500}, "c1")])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="refunds")

    @inner.tool_plain(requires_approval=True)
    def refund(cents: int) -> str:
        log("tool", cents)
        return f"refunded {cents}"

    agent = DurableAgent(inner, stream=False, approval_timeout="3d")
    client = stepline.Client("ai-approvals", is_production=False, environ={})

    async def ask(ctx: stepline.Context) -> str:
        return (await agent.on(ctx).run("refund")).output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        return agent.on(ctx).run_sync("refund").output

    trigger = stepline.TriggerEvent(event="ai/refund")
    fn = client.function(id="refund", trigger=trigger)(ask if face == "async" else ask_sync)
    engine = EmbeddedEngine(client, [fn], database=database, poll_interval=0.05, lease_seconds=1)
    engine.start()
    if part == "ask":
        run_id = client.start_sync(fn, {}).run_id
        deadline = time.monotonic() + 60
        while not (found := client.approvals_sync()[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        # written whole, then renamed: the test kills this process once the file exists
        (workdir / "approval.tmp").write_text(f"{run_id} {found[0].approval_id}")
        (workdir / "approval.tmp").rename(workdir / "approval")
        time.sleep(600)  # the test kills this process
        return
    run_id, approval_id = (workdir / "approval").read_text().split()
    [pending], _ = client.approvals_sync()
    client.approve_sync(approval_id, args={"cents": 300}, by="ops:ann")
    handle = client.get_run_sync(run_id)
    result = {
        "pending": pending.approval_id,
        "output": handle.result(timeout=60),
        "steps": [step.name for step in handle.steps()],
        "approval": client.get_approval_sync(approval_id).decision,
    }
    (workdir / "result.json").write_text(json.dumps(result))
    engine.stop()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4])
