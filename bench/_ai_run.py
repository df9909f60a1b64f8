"""The agent run ``ai_bench.py`` times on every side: one function model, one tool, three shapes.

Imports Pydantic AI and nothing of stepline's or DBOS's, so that stepline's venv
(``ai_bench.py``: the plain agent and stepline's durable agent) and the peers' venv
(``ai_dbos_peer.py``: the plain agent and Pydantic AI's DBOS agent) run the very same
model, tool and prompts.

The model is a ``FunctionModel`` answering at once (no network, no sleep), so what is timed
is the agent loop and what durability adds to it. The user prompt names the shape:

- ``single``: one model request, answered with text (1 request, 0 tool calls);
- ``chain N``: each of N requests calls the tool ``lookup`` once, then a last request
  answers (N + 1 requests, N tool calls);
- ``fan N``: one request calls ``lookup`` N times, then a second answers (2 requests, N
  tool calls).

From a side's time per run of each shape, ``solve`` gives its cost per run, per model
request and per tool call (three equations, three unknowns); the same over the times the
durable agent adds to the plain one gives the added cost of each.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

SHAPES = ("single", "chain", "fan")


def counts(shape: str, n: int) -> tuple[int, int]:
    """``(model requests, tool calls)`` of one run of ``shape``."""
    return {"single": (1, 0), "chain": (n + 1, n), "fan": (2, n)}[shape]


def prompt(shape: str, n: int) -> str:
    return f"{shape} {n}"


def expected_output(shape: str, n: int) -> str:
    """What a run of ``shape`` returns: the last response's text."""
    return f"done after {counts(shape, n)[0] - 1} requests"


def _plan(messages: list[ModelMessage]) -> list[ToolCallPart] | str:
    """The next response: the tool calls to make, or the final text."""
    first = messages[0]
    assert isinstance(first, ModelRequest)
    asked = next(str(p.content) for p in first.parts if isinstance(p, UserPromptPart))
    shape, n = asked.split()[0], int(asked.split()[1])
    made = sum(isinstance(m, ModelResponse) for m in messages)
    if shape == "chain" and made < int(n):
        return [ToolCallPart("lookup", {"i": made}, f"c{made}")]
    if shape == "fan" and made == 0:
        return [ToolCallPart("lookup", {"i": i}, f"c{i}") for i in range(int(n))]
    return f"done after {made} requests"


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    plan = _plan(messages)
    return ModelResponse(parts=[TextPart(plan)] if isinstance(plan, str) else list(plan))


async def stream(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    plan = _plan(messages)
    if isinstance(plan, str):
        words = plan.split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "
        return
    yield {
        i: DeltaToolCall(
            name=c.tool_name, json_args=json.dumps(c.args), tool_call_id=c.tool_call_id
        )
        for i, c in enumerate(plan)
    }


async def lookup(i: int) -> dict[str, int]:
    """The tool: returns at once (what is timed is the call's durability, not its work)."""
    return {"i": i}


def agent(name: str, tool: Callable[..., Awaitable[dict[str, int]]] = lookup) -> Agent[None, str]:
    """A fresh agent on the function model, with ``tool`` as ``lookup``."""
    made: Agent[None, str] = Agent(FunctionModel(respond, stream_function=stream), name=name)
    made.tool_plain(name="lookup")(tool)
    return made


def timed(
    runners: dict[str, Callable[[str], Any]], n: int, runs: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per run of each runner and shape: ``runner(prompt)`` returns the output.

    The runners and shapes take turns (one run of each, ``runs`` times), so a drift of the
    machine touches the plain and the durable agent alike; ``warmup`` rounds first.
    """
    times: dict[str, dict[str, list[float]]] = {
        name: {shape: [] for shape in SHAPES} for name in runners
    }
    for turn in range(warmup + runs):
        for name, run in runners.items():
            for shape in SHAPES:
                began = time.perf_counter()
                output = run(prompt(shape, n))
                took = (time.perf_counter() - began) * 1000
                if output != expected_output(shape, n):
                    raise SystemExit(f"{name} {shape}: got {output!r}")
                if turn >= warmup:
                    times[name][shape].append(took)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {shape: statistics.median(values) for shape, values in times.items()}


def solve(per_shape: dict[str, float], n: int) -> dict[str, float]:
    """Cost per run, per model request and per tool call from the shapes' times (ms).

    ``single = run + request``; ``chain = run + (n+1) request + n tool``;
    ``fan = run + 2 request + n tool``.
    """
    request = (per_shape["chain"] - per_shape["fan"]) / (n - 1)
    tool = (per_shape["fan"] - per_shape["single"] - request) / n
    return {"run_ms": per_shape["single"] - request, "request_ms": request, "tool_ms": tool}


def added(durable: dict[str, float], plain: dict[str, float]) -> dict[str, float]:
    """Each shape's time per run less the plain agent's."""
    return {shape: durable[shape] - plain[shape] for shape in SHAPES}
