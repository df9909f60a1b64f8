"""The refunds agent: a Pydantic AI agent with two tools, one of which needs approval.

``refund`` is declared ``requires_approval=True``: when the model calls it, the run waits
(durably: hours or days, no thread held) until a person approves it, with the arguments
as the model gave them or edited, or rejects it with a reason, in the Django admin's
**Approvals** inbox.

The model is Pydantic AI's ``FunctionModel`` running ``scripted`` below, so the example
runs offline with no key. A real model goes in ``DESK_MODEL`` (``"openai:gpt-5"``,
``"anthropic:claude-sonnet-4-5"``... with its provider's package and key installed).
"""

from __future__ import annotations

import os
import re

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from stepline.ai import DurableAgent

#: the shop's orders: id -> (what, price in cents)
ORDERS = {"7": ("a teapot", 2500), "8": ("two mugs", 1800)}


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """An offline model: look the order up, ask to refund it, then say what happened."""
    returned = {
        part.tool_name: part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    }
    prompt = " ".join(
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    )
    order = (re.findall(r"\d+", prompt) or ["7"])[0]
    if "refund" in returned:
        return ModelResponse(parts=[TextPart(f"Order {order}: {returned['refund']}")])
    if "order_status" not in returned:
        return ModelResponse(parts=[ToolCallPart("order_status", {"order_id": order})])
    cents = ORDERS.get(order, ("", 0))[1]
    args = {"order_id": order, "cents": cents, "reason": prompt[:200]}
    return ModelResponse(parts=[ToolCallPart("refund", args)])


def model() -> Model | str:
    """The model the agent asks: ``DESK_MODEL`` if set, else the offline one."""
    return os.environ.get("DESK_MODEL") or FunctionModel(scripted)


agent = Agent(
    model(),
    name="refunds",
    instructions="You handle refund requests. Look the order up, then refund it in full "
    "with the refund tool, then tell the customer what happened in one sentence.",
)


@agent.tool_plain
def order_status(order_id: str) -> str:
    """What an order is and what it cost."""
    what, cents = ORDERS.get(order_id, ("an unknown order", 0))
    return f"order {order_id}: {what}, paid {cents} cents"


@agent.tool_plain(requires_approval=True)
def refund(order_id: str, cents: int, reason: str) -> str:
    """Refund an order, in cents. A person approves each refund first."""
    # your payment provider here: this runs once, as a step, and only once approved
    return f"refunded {cents} cents on order {order_id}"


# each model request and tool call a step; the approval a durable wait (3 days, then rejected)
refunds = DurableAgent(agent, stream=False, approval_timeout="3d")
