"""One run of a durable agent inside one call of a Stepline function: its options, its
context, and the ids of its steps.

The run is current (a ``ContextVar``) while the agent runs, so the model and the
toolsets, which Pydantic AI calls without a Stepline context, find it; tasks the agent
starts copy it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator

from stepline import _errors
from stepline._execution.step import Duration
from stepline.ai._steps import AnyContext
from stepline.ai._usage import TokenBudget

__all__ = ["AgentOptions", "AgentRun", "bound", "current"]


@dataclasses.dataclass(frozen=True, slots=True)
class AgentOptions:
    """A durable agent's options (see ``DurableAgent``)."""

    name: str
    topic: str | None
    stream: bool
    model_retries: int | None
    model_timeout: Duration | None
    tool_retries: int | None
    tool_timeout: Duration | None
    budget: TokenBudget | None


@dataclasses.dataclass(slots=True)
class AgentRun:
    """One agent run: where its steps go, and how many model requests it has made.

    Attributes:
        ctx: the Stepline context the run's steps are steps of.
        prefix: its step ids' prefix: the agent's name, ``name#2`` for its second run in
            the same function call, and so on.
        options: the agent's options.
    """

    ctx: AnyContext
    prefix: str
    options: AgentOptions
    requests: int = 0

    def next_request_id(self) -> str:
        """The step id of the run's next model request: ``<prefix>:model-request-<n>``."""
        self.requests += 1
        return f"{self.prefix}:model-request-{self.requests}"

    def tool_step_id(self, tool: str, tool_call_id: str) -> str:
        """The step id of a tool call: ``<prefix>:tool:<tool>:<tool_call_id>``.

        The call id comes from the recorded model response, so it is the same on replay.
        """
        return f"{self.prefix}:tool:{tool}:{tool_call_id}"


_current: contextvars.ContextVar[AgentRun | None] = contextvars.ContextVar(
    "stepline_ai_run", default=None
)


@contextlib.contextmanager
def bound(run: AgentRun) -> Iterator[AgentRun]:
    """Make ``run`` current while the agent runs."""
    token = _current.set(run)
    try:
        yield run
    finally:
        _current.reset(token)


def current() -> AgentRun | None:
    """The agent run in progress in this task, if any."""
    return _current.get()


def required(what: str) -> AgentRun:
    """The current agent run; ``ConfigError`` naming ``what`` needed it outside one."""
    run = _current.get()
    if run is None:
        raise _errors.ConfigError(
            f"{what} of a stepline.ai.DurableAgent runs inside the agent's run in a Stepline "
            "function: agent.on(ctx).run(...)"
        )
    return run
