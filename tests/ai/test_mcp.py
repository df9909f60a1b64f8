"""An MCP server's toolset in a durable agent, against a real server over stdio.

``tests/apps/mcp_orders.py`` is the server, a process per session (Pydantic AI's
``MCPToolset`` starts it): it appends a line to a log for each session it starts, each
listing of its tools and each tool call, and offers the tools a file names, read when a
session starts. Each function runs its agent, then has the server drop a tool (a step),
sleeps, and runs the agent again: the call after the sleep replays the first agent run,
which must neither connect to the server nor see the tool list change, and lists the
tools afresh for the second run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastmcp.client.transports import StdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent
from stepline.testing import TestEnv
from tests._support.processes import APPS

pytestmark = [pytest.mark.process]

SERVER = APPS / "mcp_orders.py"


class Server:
    """The MCP server's files: what it offers, and what it was asked."""

    def __init__(self, where: Path) -> None:
        where.mkdir(exist_ok=True)
        self.log = where / "asked.log"
        self.tools = where / "tools.txt"
        self.offer("order_status", "refund")

    def offer(self, *tools: str) -> None:
        """The tools the server's next session lists."""
        self.tools.write_text(",".join(tools))

    def asked(self) -> list[str]:
        """What the server was asked, in order: ``session``, ``list``, ``call <tool>``."""
        if not self.log.exists():
            return []
        return [line.split(" ", 1)[1] for line in self.log.read_text().splitlines()]

    def toolset(self, **options: Any) -> MCPToolset[Any]:
        args = [str(SERVER), str(self.log), str(self.tools)]
        # a process per session (fastmcp keeps one alive across sessions by default)
        transport = StdioTransport(command=sys.executable, args=args, keep_alive=False)
        return MCPToolset(transport, **{"id": "orders", **options})


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


@pytest.fixture
def client() -> stepline.Client:
    return stepline.Client("ai-mcp-tests", is_production=False, environ={})


def _returned(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [
        part
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


class Model:
    """A model that looks order 7 up when it is offered ``order_status``, then answers
    with what the tool said; it notes the tools and instructions each request had."""

    def __init__(self) -> None:
        self.calls = 0
        self.offered: list[list[str]] = []
        self.instructions: list[str | None] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        offered = sorted(tool.name for tool in info.function_tools)
        self.offered.append(offered)
        last = messages[-1]
        self.instructions.append(last.instructions if isinstance(last, ModelRequest) else None)
        returned = _returned(messages)
        if returned:
            return ModelResponse(parts=[TextPart(f"Order 7: {returned[-1].content}")])
        if "order_status" in offered:
            call = ToolCallPart("order_status", {"order_id": "7"}, f"call-{self.calls}")
            return ModelResponse(parts=[call])
        return ModelResponse(parts=[TextPart("I cannot look orders up.")])


def build(server: Server, model: Model, **options: Any) -> DurableAgent[None, str]:
    agent: Agent[None, str] = Agent(
        FunctionModel(model), name="support", toolsets=[server.toolset(**options)]
    )
    return DurableAgent(agent, stream=False, tool_timeout="30s")


def function(
    client: stepline.Client, agent: DurableAgent[None, str], server: Server, face: str
) -> stepline.Function:
    """Runs ``agent``, has the server drop ``order_status``, sleeps, runs ``agent`` again."""
    trigger = stepline.TriggerEvent(event="orders/asked")

    def drop() -> None:
        server.offer("refund")

    async def ask(ctx: stepline.Context) -> list[str]:
        first = await agent.on(ctx).run("Where is order 7?")
        await ctx.step.run("server-changes", drop)
        await ctx.step.sleep("later", "1s")
        second = await agent.on(ctx).run("Where is order 7?")
        return [first.output, second.output]

    def ask_sync(ctx: stepline.SyncContext) -> list[str]:
        first = agent.on(ctx).run_sync("Where is order 7?")
        ctx.step.run("server-changes", drop)
        ctx.step.sleep("later", "1s")
        second = agent.on(ctx).run_sync("Where is order 7?")
        return [first.output, second.output]

    chosen: Callable[..., Any] = ask if face == "async" else ask_sync
    return client.function(id=f"orders-{face}", trigger=trigger, retries=2)(chosen)


FIRST_RUN = [
    "support:mcp:orders:tools",
    "support:model-request-1",
    "support:model-request-1:done",
    "support:tool:order_status:call-1",
    "support:model-request-2",
    "support:model-request-2:done",
]


@pytest.mark.parametrize("face", ["async", "sync"])
def test_listing_and_calling_an_mcp_servers_tools_are_steps_a_replay_never_repeats(
    client: stepline.Client, server: Server, face: str
) -> None:
    model = Model()
    fn = function(client, build(server, model), server, face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        output = run.result_sync()
        steps = run.steps_sync()
    assert output == ["Order 7: order 7 shipped on Monday", "I cannot look orders up."]
    assert [step.name for step in steps] == [
        *FIRST_RUN,
        "server-changes",
        "later",
        "support#2:mcp:orders:tools",
        "support#2:model-request-1",
        "support#2:model-request-1:done",
    ]
    # the first run's session, and the second run's: the replay in between asked nothing
    assert server.asked() == ["session", "list", "call order_status", "session", "list"]
    listed = {step.name: step.output for step in steps if step.name.endswith(":tools")}
    assert sorted(listed["support:mcp:orders:tools"]) == ["order_status", "refund"]
    assert sorted(listed["support#2:mcp:orders:tools"]) == ["refund"]
    recorded = listed["support:mcp:orders:tools"]["order_status"]
    assert recorded["description"] == "The status of an order."
    assert recorded["parameters_json_schema"]["required"] == ["order_id"]
    # the model saw the recorded list: once per request of the first run, then the new one
    assert model.offered == [["order_status", "refund"]] * 2 + [["refund"]]


def test_without_cache_tools_each_listing_is_a_step_and_instructions_are_one(
    client: stepline.Client, server: Server
) -> None:
    model = Model()
    agent = build(server, model, cache_tools=False, include_instructions=True)
    fn = function(client, agent, server, "async")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync()[0] == "Order 7: order 7 shipped on Monday"
        names = [step.name for step in run.steps_sync()]
    assert names[:8] == [
        "support:mcp:orders:tools",
        "support:mcp:orders:instructions",
        "support:model-request-1",
        "support:model-request-1:done",
        "support:tool:order_status:call-1",
        "support:mcp:orders:tools-2",
        "support:model-request-2",
        "support:model-request-2:done",
    ]
    assert server.asked() == [
        *["session", "list", "call order_status", "list"],
        *["session", "list"],
    ]
    assert all("Orders are numbered" in str(text) for text in model.instructions)


def test_a_failed_tool_call_is_retried_in_a_session_its_retry_opens(
    client: stepline.Client, server: Server
) -> None:
    (server.log.parent / "fail-once").touch()
    model = Model()
    fn = function(client, build(server, model, tool_error_behavior="error"), server, "sync")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync()[0] == "Order 7: order 7 shipped on Monday"
        names = [step.name for step in run.steps_sync()]
    assert names[:6] == FIRST_RUN
    # the retry replays the listing (no session for it) and opens one for the call
    assert server.asked()[:5] == [
        *["session", "list", "call order_status"],
        *["session", "call order_status"],
    ]
    assert model.calls == 3  # the first run's two requests, once each; the second run's


def test_two_servers_are_listed_one_step_after_the_other(
    client: stepline.Client, tmp_path: Path
) -> None:
    orders, billing = Server(tmp_path / "orders"), Server(tmp_path / "billing")
    orders.offer("order_status")
    billing.offer("refund")
    model = Model()
    toolsets = [orders.toolset(), billing.toolset(id="billing")]
    agent = DurableAgent(
        Agent(FunctionModel(model), name="support", toolsets=toolsets), stream=False
    )
    fn = function(client, agent, billing, "async")  # which drops nothing: it offers "refund"
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync() == ["Order 7: order 7 shipped on Monday"] * 2
        names = [step.name for step in run.steps_sync()]
    assert names[:3] == [
        "support:mcp:orders:tools",
        "support:mcp:billing:tools",
        "support:model-request-1",
    ]
    assert model.offered[:2] == [["order_status", "refund"]] * 2
    # each agent run's session; the replay in between asked neither server anything
    assert orders.asked() == ["session", "list", "call order_status"] * 2
    assert billing.asked() == ["session", "list"] * 2


def test_an_mcp_server_in_a_durable_agent_needs_an_id(server: Server) -> None:
    agent: Agent[None, str] = Agent(
        FunctionModel(Model()), name="support", toolsets=[server.toolset(id=None)]
    )
    with pytest.raises(stepline.ConfigError, match=r"MCPToolset\(\.\.\., id='orders'\)"):
        _ = DurableAgent(agent).toolsets
