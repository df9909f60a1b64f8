"""``DurableAgent``: a Pydantic AI agent whose model requests and tool calls are steps."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic_ai.agent import AbstractAgent, WrapperAgent
from pydantic_ai.models import Model
from pydantic_ai.output import OutputDataT
from pydantic_ai.run import AgentRun as PydanticAgentRun
from pydantic_ai.tools import AgentDepsT
from pydantic_ai.toolsets import AbstractToolset

from stepline import _errors
from stepline._execution import publish as _publish
from stepline._execution import step_timeouts
from stepline._execution.context import SyncContext
from stepline._execution.step import Duration
from stepline.ai import _conversations, _steps
from stepline.ai._approvals import DurableApprovals
from stepline.ai._model import StepModel
from stepline.ai._run import AgentOptions, AgentRun, ApprovalOptions, OnTimeout, bound
from stepline.ai._toolset import durable_leaf
from stepline.ai._usage import TokenBudget

__all__ = ["DurableAgent"]


class DurableAgent(WrapperAgent[AgentDepsT, OutputDataT]):
    """A Pydantic AI agent made durable inside a Stepline function or durable endpoint.

    Each model request (streamed or not) is a step, ``<name>:model-request-<n>``, and
    each tool call of the agent's toolsets (function tools, MCP servers) is a step,
    ``<name>:tool:<tool>:<tool_call_id>``. A replay (after a crash, a sleep, a deploy)
    returns the recorded responses and results and never calls the model or the tool
    again. Bind the agent to the function's context with ``on(ctx)``, then use any of
    Pydantic AI's ways to run it:

    Example:
        >>> support = DurableAgent(Agent("openai:gpt-5", name="support"),
        ...                        budget=TokenBudget(50_000))
        >>> @client.function(id="chat", trigger=stepline.TriggerEvent(event="chat/asked"))
        ... async def chat(ctx: stepline.Context) -> str:
        ...     result = await support.on(ctx).run(ctx.event.data["prompt"])
        ...     return result.output

    In a plain ``def`` function use ``support.on(ctx).run_sync(...)``. While a model
    request streams (all of them, with ``stream``), its text deltas go onto the run's
    stream, ``topic``, as they arrive; see ``stepline.ai.fold``.

    Tool calls run one at a time, in the order the model asked for them, so that each is
    one step. A per-run ``event_stream_handler`` runs on the agent's side, again on every
    replay: read the run's stream instead.

    Args:
        wrapped: the agent; its model must be set on it (not given per run).
        name: names the agent's steps; defaults to the agent's ``name``. Keep it stable
            while runs are in flight: recorded steps are found by it.
        topic: the run-stream topic of the agent's live messages; None publishes none.
        stream: make every model request a streamed one, inside its step, so that its
            text reaches ``topic`` as it arrives, however the agent is run; False for a
            model that cannot stream (then only ``run_stream`` and an
            ``event_stream_handler`` stream).
        model_retries: the most retries of one model request (at most the function's
            ``retries``); past them its error fails the run. None: the function's.
        model_timeout: how long one attempt of a model request may take (a timedelta,
            milliseconds or ``"30s"``); None: the function's ``Timeouts(step=)``.
        tool_retries: as ``model_retries``, for each tool call.
        tool_timeout: as ``model_timeout``, for each tool call.
        budget: the tokens the run's model requests may use (``TokenBudget``).
        approval_timeout: how long a tool call that needs approval (``requires_approval``,
            ``ApprovalRequired``) waits for a person's decision; None: a year. The run
            waits durably (no worker held) in the step ``<name>:approval:<tool>:<id>``.
            A budget with ``on_exceeded="approve"`` waits as long.
        on_approval_timeout: ``"reject"`` (the model is told no one approved the call;
            over budget, the run fails with ``TokenBudgetExceededError``) or ``"fail"``
            (the run fails with ``ApprovalTimeoutError``).

    Raises:
        ConfigError: no name, an invalid topic, retries or timeout.
    """

    def __init__(
        self,
        wrapped: AbstractAgent[AgentDepsT, OutputDataT],
        *,
        name: str | None = None,
        topic: str | None = "ai",
        stream: bool = True,
        model_retries: int | None = None,
        model_timeout: Duration | None = None,
        tool_retries: int | None = None,
        tool_timeout: Duration | None = None,
        budget: TokenBudget | None = None,
        approval_timeout: Duration | None = None,
        on_approval_timeout: OnTimeout = "reject",
    ) -> None:
        super().__init__(wrapped)
        name = name or wrapped.name
        if not name or not isinstance(name, str):
            raise _errors.ConfigError(
                "a DurableAgent needs a name, to name its steps: DurableAgent(agent, name=...) "
                "or Agent(..., name=...)"
            )
        if topic is not None:
            _publish.check_topic(topic)
        for what, retries in (("model_retries", model_retries), ("tool_retries", tool_retries)):
            if retries is not None and (
                isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
            ):
                raise _errors.ConfigError(f"{what} is an int >= 0 or None, got {retries!r}")
        step_timeouts.seconds(model_timeout, "model_timeout")
        step_timeouts.seconds(tool_timeout, "tool_timeout")
        if budget is not None and not isinstance(budget, TokenBudget):
            raise _errors.ConfigError(f"budget is a stepline.ai.TokenBudget, got {budget!r}")
        self._approvals = ApprovalOptions(approval_timeout, on_approval_timeout)
        self._options = AgentOptions(
            name,
            topic,
            stream,
            model_retries,
            model_timeout,
            tool_retries,
            tool_timeout,
            budget,
            self._approvals,
        )
        self._step_model: StepModel | None = None
        self._step_model_of: object = None  # the wrapped agent's model it wraps
        self._ctx: _steps.AnyContext | None = None

    def on(self, ctx: _steps.AnyContext) -> DurableAgent[AgentDepsT, OutputDataT]:
        """This agent, bound to the Stepline context ``ctx``: its runs are ``ctx``'s steps.

        Cheap (a shallow copy); call it in the function, once per call or per run. Given a
        ``SyncContext``, it also gives the function's thread the event loop ``run_sync``
        runs on, closed when the thread ends (Pydantic AI makes one and never closes it).

        Args:
            ctx: the function's ``stepline.Context`` or ``stepline.SyncContext`` (a durable
                endpoint's ``EndpointContext`` and ``SyncEndpointContext`` too).
        """
        if isinstance(ctx, SyncContext):
            _steps.thread_loop()
        bound_agent = copy.copy(self)
        bound_agent._ctx = ctx
        return bound_agent

    @property
    def name(self) -> str:
        """The name the agent's steps carry."""
        return self._options.name

    @name.setter
    def name(self, value: str | None) -> None:
        raise _errors.ConfigError("a DurableAgent's name is fixed: its recorded steps carry it")

    @property
    def model(self) -> Model:
        """The wrapped agent's model (as it is now), its requests made steps."""
        model = self.wrapped.model
        if model is None:
            raise _errors.ConfigError(
                "a DurableAgent's agent needs its model set on it, not given per run"
            )
        if self._step_model is None or self._step_model_of is not model:
            self._step_model, self._step_model_of = StepModel(model), model
        return self._step_model

    @property
    def toolsets(self) -> Sequence[AbstractToolset[AgentDepsT]]:
        """The agent's toolsets, their tool calls made steps."""
        return [toolset.visit_and_replace(durable_leaf) for toolset in self.wrapped.toolsets]

    @contextlib.asynccontextmanager
    async def iter(
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[PydanticAgentRun[AgentDepsT, Any]]:
        """Pydantic AI's ``iter``, with the model and the toolsets durable; every other way
        of running the agent (``run``, ``run_sync``, ``run_stream``...) goes through it.

        Its arguments are the wrapped agent's, except ``model`` (set on the agent). With
        a ``conversation_id``, the run is one of that conversation's: it carries the run
        attribute ``conversation``, starts from the messages the conversation's latest
        earlier run recorded (a step, ``<name>:history``; unless ``message_history`` or
        ``conversation`` is given) and records its own (``<name>:messages``).

        Raises:
            ConfigError: the agent is not bound to a context (``on(ctx)``), or a per-run
                ``model`` was given.
        """
        ctx = self._bound_context()
        if kwargs.get("model") is not None:
            raise _errors.ConfigError(
                "a DurableAgent takes no per-run model: set the model on the agent it wraps"
            )
        extra = kwargs.pop("toolsets", None) or ()
        toolsets = [*self.toolsets, *(t.visit_and_replace(durable_leaf) for t in extra)]
        # last, so that the agent's own deferred-call handlers answer first
        capabilities = [
            *(kwargs.pop("capabilities", None) or ()),
            DurableApprovals(self._approvals),
        ]
        run = AgentRun(ctx, _steps.ledger(ctx).next_prefix(self.name), self._options)
        conversation_id = kwargs.get("conversation_id")
        in_conversation = isinstance(conversation_id, str) and conversation_id != "new"
        with (
            bound(run),
            self.wrapped.override(model=self.model, toolsets=toolsets, tools=[]),
            AbstractAgent.parallel_tool_call_execution_mode("sequential"),
        ):
            if in_conversation:
                given = kwargs.get("message_history") or kwargs.get("conversation")
                loaded = await _conversations.history(run, str(conversation_id), load=not given)
                if loaded:
                    kwargs["message_history"] = loaded
            async with self.wrapped.iter(*args, capabilities=capabilities, **kwargs) as agent_run:
                yield agent_run
            if in_conversation and agent_run.result is not None:
                await _conversations.record(run, agent_run.all_messages())

    def _bound_context(self) -> _steps.AnyContext:
        if self._ctx is None:
            raise _errors.ConfigError(
                "run a DurableAgent bound to the function's context: agent.on(ctx).run(...); "
                "outside a Stepline function, run the agent it wraps"
            )
        return self._ctx
