"""Durable tools: each tool call of a leaf toolset (function tools, MCP servers) is a step.

An MCP server's leaf is ``stepline.ai._mcp.MCPStepToolset``, whose listing of the server's
tools is a step too.

The step records the tool's outcome as JSON: what it returned, or the control-flow
signal it raised for the agent (``ModelRetry``, ``CallDeferred``, ``ApprovalRequired``),
which is raised again on the agent's side from the record, on the first run and on
every replay alike. Any other error fails the step's attempt (Stepline retries it).
"""

from __future__ import annotations

import sys
from typing import Any

import pydantic
from pydantic_ai.exceptions import ApprovalRequired, CallDeferred, ModelRetry
from pydantic_ai.messages import ToolReturn
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_ai.toolsets.wrapper import WrapperToolset

from stepline.ai import _steps, _stream
from stepline.ai._model import final_error
from stepline.ai._run import current

__all__ = ["StepToolset", "durable_leaf", "is_mcp"]

_TOOL_RETURN: pydantic.TypeAdapter[ToolReturn] = pydantic.TypeAdapter(ToolReturn)


class StepToolset(WrapperToolset[AgentDepsT]):
    """A toolset whose ``call_tool`` is a step of the current agent run.

    Outside a durable agent's run (the wrapped agent used directly) it calls through.
    """

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        """One tool call, as the step ``<agent>:tool:<name>:<tool_call_id>`` (with
        ``:approved`` once a person approved it: ``stepline.ai._approvals``)."""
        run = current()
        if run is None:
            return await self.wrapped.call_tool(name, tool_args, ctx, tool)
        stepline_ctx, options = run.ctx, run.options
        call_id = ctx.tool_call_id or f"call-{ctx.run_step}"
        step_id = run.tool_step_id(name, call_id)
        if ctx.tool_call_approved:  # a step apart from the call's first, which asked
            step_id = f"{step_id}:approved"

        async def body() -> dict[str, Any]:
            try:
                result = await self._call(name, tool_args, ctx, tool)
            except ModelRetry as exc:
                return {"kind": "retry", "message": exc.message}
            except ApprovalRequired as exc:
                return {"kind": "approval", "metadata": getattr(exc, "metadata", None)}
            except CallDeferred as exc:
                return {"kind": "deferred", "metadata": getattr(exc, "metadata", None)}
            except Exception as exc:
                attempt = stepline_ctx.attempt
                raise final_error(exc, attempt, options.tool_retries, step_id) from exc
            if isinstance(result, ToolReturn):
                value = _TOOL_RETURN.dump_python(result, mode="json")
                return {"kind": "tool-return", "value": value}
            return {"kind": "return", "value": result}

        outcome = await _steps.run_step(stepline_ctx, step_id, body, timeout=options.tool_timeout)
        if options.topic is not None:
            message = _stream.tool_result(step_id, name, call_id, outcome)
            stepline_ctx.publish(options.topic, message)
        return _outcome(outcome)

    async def _call(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        """The wrapped toolset's call of the tool, inside the step."""
        return await self.wrapped.call_tool(name, tool_args, ctx, tool)


def _outcome(outcome: dict[str, Any]) -> Any:
    """What the tool call gives the agent: the recorded value, or the signal raised again."""
    kind = outcome.get("kind")
    metadata = outcome.get("metadata")
    if kind == "retry":
        raise ModelRetry(str(outcome.get("message")))
    if kind == "approval":
        raise ApprovalRequired(metadata) if metadata is not None else ApprovalRequired()
    if kind == "deferred":
        raise CallDeferred(metadata) if metadata is not None else CallDeferred()
    if kind == "tool-return":
        return _TOOL_RETURN.validate_python(outcome.get("value"))
    return outcome.get("value")


def durable_leaf(toolset: AbstractToolset[AgentDepsT]) -> AbstractToolset[AgentDepsT]:
    """``toolset`` with its tool calls as steps (for ``visit_and_replace``: leaves only);
    an MCP server's with its tool listing as a step too."""
    if isinstance(toolset, StepToolset):
        return toolset
    if is_mcp(toolset):
        from stepline.ai._mcp import MCPStepToolset  # here: it imports this module

        return MCPStepToolset(toolset)
    return StepToolset(toolset)


def is_mcp(toolset: AbstractToolset[Any]) -> bool:
    """Whether ``toolset`` is Pydantic AI's ``MCPToolset`` (never importing its module:
    it needs the MCP client, which an agent without MCP servers may not have)."""
    module = sys.modules.get("pydantic_ai.mcp")
    kind = getattr(module, "MCPToolset", None) if module is not None else None
    return (
        isinstance(kind, type)
        and isinstance(toolset, kind)
        and callable(getattr(toolset, "tool_for_tool_def", None))
    )
