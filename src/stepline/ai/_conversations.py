"""Conversations: runs that carry one conversation id, each continuing the one before.

Pydantic AI's own ``conversation_id`` names the conversation:
``agent.on(ctx).run(prompt, conversation_id="chat-42")``. The durable agent then

* sets the run attribute ``conversation`` (not a step; a replay sets nothing), so the
  engine lists the conversation's runs in order (``GET /v1/conversations/{id}/runs``,
  ``client.conversation_runs``);
* unless the run is given its history (``message_history=`` or ``conversation=``),
  loads it as a step, ``<name>:history``: the longest history another run of the
  conversation recorded (the latest's, as each run's holds the one before it), read
  from the engine (a replay returns the recorded one, so the agent sees the same
  history on every replay);
* once the agent run ends, records its messages (the history and the new ones) as a
  step, ``<name>:messages``, which the next run of the conversation loads.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter

from stepline import _errors
from stepline._api import runs as _runs
from stepline._api import tokens as _api_tokens
from stepline._execution.context import Context, call_state
from stepline._execution.publish import publisher_of
from stepline.ai import _steps
from stepline.ai._run import AgentRun

__all__ = ["ATTRIBUTE", "history", "record"]

#: the run attribute naming a run's conversation (the engine's too)
ATTRIBUTE = "conversation"
#: how many earlier runs of a conversation a history step looks through, newest first
LOOK_BACK = 20


async def history(run: AgentRun, conversation_id: str, *, load: bool) -> list[ModelMessage]:
    """Mark the run as one of ``conversation_id``'s; with ``load``, the history the
    conversation's latest run recorded (a step), else nothing."""
    if not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= 256:
        raise _errors.ConfigError(f"a conversation id is 1-256 characters, got {conversation_id!r}")
    ctx = run.ctx
    if isinstance(ctx, Context):
        await ctx.set_attributes({ATTRIBUTE: conversation_id})
    else:
        ctx.set_attributes({ATTRIBUTE: conversation_id})
    if not load:
        return []
    name = run.options.name

    async def body() -> Any:
        return await _earlier_messages(run, conversation_id, name)

    value = await _steps.run_step(ctx, f"{run.prefix}:history", body, timeout=None)
    return ModelMessagesTypeAdapter.validate_python(value or [])


async def record(run: AgentRun, messages: list[ModelMessage]) -> None:
    """Record the run's messages, for the conversation's next run (a step)."""
    data = ModelMessagesTypeAdapter.dump_python(messages, mode="json")

    async def body() -> Any:
        return data

    await _steps.run_step(run.ctx, f"{run.prefix}:messages", body, timeout=None)


async def _earlier_messages(run: AgentRun, conversation_id: str, name: str) -> Any:
    """The longest history another run of the conversation recorded (the latest, in a
    conversation whose runs follow one another), as JSON; [] when there is none.

    Looks through the conversation's ``LOOK_BACK`` newest runs: their order by creation
    time is not enough alone (two runs may share a millisecond, and a run held back by
    flow control records after a later one), while each run's history holds the one
    before it.
    """
    ctx = run.ctx
    connection = publisher_of(call_state(ctx)).connection
    settings = connection.settings
    pattern = re.compile(rf"{re.escape(name)}(#\d+)?:messages")
    flow = _api_tokens.conversation_flow(settings, conversation_id)
    if isinstance(ctx, Context):
        runs = await connection.run_async(flow)
    else:
        runs = connection.run_sync(flow)
    others = [info.run_id for info in runs if info.run_id != ctx.run_id]
    best: Any = []
    for run_id in reversed(others[-LOOK_BACK:]):
        steps_flow = _runs.steps_flow(settings, run_id)
        if isinstance(ctx, Context):
            steps = await connection.run_async(steps_flow)
        else:
            steps = connection.run_sync(steps_flow)
        recorded = [s for s in steps if pattern.fullmatch(s.name) and s.status == "Completed"]
        output = recorded[-1].output if recorded else None
        if isinstance(output, list) and len(output) > len(best):
            best = output
    return best
