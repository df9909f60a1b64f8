"""A person in the loop: a tool call that needs approval waits durably for a decision.

A tool declared ``requires_approval=True``, or one that raises ``ApprovalRequired``, is a
deferred tool call in Pydantic AI. A durable agent answers it inline, through Pydantic
AI's ``handle_deferred_tool_calls`` capability hook, with a Stepline wait for a signal:
the step ``<agent>:approval:<tool>:<tool_call_id>`` waits (hours or days, no worker
held) with the pending call recorded on the wait (``opts["approval"]``: the tool, its
arguments, their JSON schema), which is how the engine lists pending approvals
(``GET /v1/approvals``) and answers one (``POST /v1/approvals/{id}/approve|reject``),
recording who decided and when in the signal's data.

The decision becomes Pydantic AI's own ``ToolApproved`` (with the edited arguments, if
any: Pydantic AI validates them as it validates the model's) or ``ToolDenied`` (its
message, the reason, goes to the model). An approved call then runs as its own tool
step, ``<agent>:tool:<tool>:<tool_call_id>:approved``. A replay returns the recorded
decision: a decided call is never asked again.

The approvals of one model response are asked one after the other, in the order the
model made the calls: the second is pending once the first is decided.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import (
    AgentDepsT,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolApproved,
    ToolDefinition,
    ToolDenied,
)

from stepline import _errors
from stepline._execution.context import call_state
from stepline._execution.step import signal_token
from stepline._protocol import durations
from stepline._protocol.opcodes import Opcode
from stepline.ai._run import AgentRun, ApprovalOptions, current

__all__ = [
    "ApprovalOptions",
    "ApprovalTimeoutError",
    "DurableApprovals",
    "ask",
    "signal_name",
    "step_id_of",
]

#: Newer Pydantic AI releases keep who answered a deferred call; older ones (2.54, the
#: newest Python 3.10 gets, among them) take the decisions alone. Who decided is in the
#: approval step's record either way.
_KNOWS_WHO_ANSWERED = "answered_by" in {f.name for f in dataclasses.fields(DeferredToolResults)}


class ApprovalTimeoutError(_errors.NonRetriableError):
    """No decision came for a tool call within ``approval_timeout``, and the agent was
    told to fail (``on_approval_timeout="fail"``): the run fails, with no retry."""

    code = "approval_timeout"


def step_id_of(run: AgentRun, tool: str, tool_call_id: str) -> str:
    """The step id of the wait for a decision on one tool call."""
    return f"{run.prefix}:approval:{tool}:{tool_call_id}"


def ask(run: AgentRun, step_id: str, request: dict[str, Any], options: ApprovalOptions) -> Any:
    """The decision recorded for the wait ``step_id`` (None: its wait timed out), or the
    wait reported, carrying ``request`` for the engine to list (an interrupt: the call
    ends here, and the run waits for a person without holding a worker)."""
    name = signal_name(step_id)
    state = call_state(run.ctx)
    opts = {
        "signal": signal_token(state, name),
        "name": name,
        "timeout": durations.format_duration(options.delta),
        "conflict": "fail",
        "approval": request,
    }
    raw = state.op_step(step_id, Opcode.WAIT_FOR_SIGNAL, name=name, opts=opts)
    if not isinstance(raw, dict):
        return None  # the wait timed out
    return raw.get("data")


def signal_name(step_id: str) -> str:
    """The signal a wait for a decision waits for: unique in the run, 1-128 characters."""
    return "approval:" + hashlib.sha1(step_id.encode()).hexdigest()


@dataclasses.dataclass
class DurableApprovals(AbstractCapability[AgentDepsT]):
    """Answers the agent's approval requests with durable waits for a person's decision.

    Calls deferred for another reason (``CallDeferred``: external execution, questions)
    are left to the agent's other capabilities or its ``DeferredToolRequests`` output.
    """

    options: ApprovalOptions = dataclasses.field(default_factory=ApprovalOptions)
    #: the function tools' definitions, as the last step offered them to the model
    tools: dict[str, ToolDefinition] = dataclasses.field(default_factory=dict)

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # built by the durable agent for each run, never from a spec

    async def prepare_tools(
        self, ctx: RunContext[AgentDepsT], tool_defs: list[ToolDefinition]
    ) -> list[ToolDefinition]:
        """Keep the tools' definitions (their arguments' JSON schemas); change nothing."""
        self.tools.update((tool.name, tool) for tool in tool_defs)
        return tool_defs

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[AgentDepsT], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        """Wait for a decision on each call that needs approval, one after the other."""
        run = current()
        if run is None or not requests.approvals:
            return None
        approvals: dict[str, ToolApproved | ToolDenied] = {}
        answered_by: dict[str, str] = {}
        for call in requests.approvals:
            metadata = requests.metadata.get(call.tool_call_id)
            decision = self._wait(run, call, metadata)
            approvals[call.tool_call_id] = self._result(decision)
            if isinstance(decision, dict) and isinstance(decision.get("by"), str):
                answered_by[call.tool_call_id] = decision["by"]
        if _KNOWS_WHO_ANSWERED:
            return DeferredToolResults(approvals=dict(approvals), answered_by=answered_by)
        return DeferredToolResults(approvals=dict(approvals))

    def _wait(self, run: AgentRun, call: ToolCallPart, metadata: Any) -> Any:
        """The recorded decision on ``call``, or the wait for it reported (an interrupt)."""
        step_id = step_id_of(run, call.tool_name, call.tool_call_id)
        tool = self.tools.get(call.tool_name)
        request = {
            "agent": run.options.name,
            "tool": call.tool_name,
            "tool_call_id": call.tool_call_id,
            "args": call.args_as_dict(),
            "schema": tool.parameters_json_schema if tool is not None else None,
            "description": tool.description if tool is not None else None,
            "metadata": metadata,
            "on_timeout": self.options.on_timeout,
        }
        return ask(run, step_id, request, self.options)

    def _result(self, decision: Any) -> ToolApproved | ToolDenied:
        """Pydantic AI's answer for a recorded decision (None: the wait timed out)."""
        if decision is None:
            if self.options.on_timeout == "fail":
                raise ApprovalTimeoutError(
                    "no decision on a tool call that needs approval came within "
                    f"{self.options.delta} (DurableAgent(approval_timeout=...), "
                    'on_approval_timeout="fail")'
                )
            return ToolDenied(f"No one approved this tool call within {self.options.delta}.")
        if not isinstance(decision, dict):
            return ToolDenied("The tool call was denied (its answer was not understood).")
        if decision.get("decision") == "approve":
            args = decision.get("args")
            return ToolApproved(override_args=args if isinstance(args, dict) else None)
        reason = decision.get("reason")
        if decision.get("decision") == "reject" and isinstance(reason, str) and reason:
            return ToolDenied(reason)
        return ToolDenied()
