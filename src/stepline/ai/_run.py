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
import datetime as _dt
from collections.abc import Iterator
from typing import Literal

from stepline import _errors
from stepline._execution.step import Duration
from stepline._protocol import durations
from stepline.ai._steps import AnyContext
from stepline.ai._usage import TokenBudget

__all__ = ["AgentOptions", "AgentRun", "ApprovalOptions", "bound", "current"]

OnTimeout = Literal["reject", "fail"]
#: How long a run waits for a decision when ``approval_timeout`` is not given.
DEFAULT_TIMEOUT = _dt.timedelta(days=365)


@dataclasses.dataclass(frozen=True, slots=True)
class ApprovalOptions:
    """How a durable agent waits for approvals (see ``DurableAgent``)."""

    timeout: Duration | None = None
    on_timeout: OnTimeout = "reject"

    def __post_init__(self) -> None:
        if self.on_timeout not in ("reject", "fail"):
            raise _errors.ConfigError(
                f"on_approval_timeout is 'reject' or 'fail', got {self.on_timeout!r}"
            )
        if self.timeout is not None:
            try:
                delta = durations.to_timedelta(self.timeout)
            except (TypeError, ValueError) as exc:
                raise _errors.ConfigError(
                    f"invalid approval_timeout {self.timeout!r}: {exc}"
                ) from None
            if delta.total_seconds() <= 0:
                raise _errors.ConfigError(f"approval_timeout must be positive: {self.timeout!r}")

    @property
    def delta(self) -> _dt.timedelta:
        """The wait's length."""
        if self.timeout is None:
            return DEFAULT_TIMEOUT
        return durations.to_timedelta(self.timeout)


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
    #: how a decision is waited for: a tool call's approval, or going over a budget
    approvals: ApprovalOptions = ApprovalOptions()


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
