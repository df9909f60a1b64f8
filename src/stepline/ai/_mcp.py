"""MCP servers in a durable agent: listing a server's tools is a step, and so is reading
its instructions; the server is connected to only by a step that runs.

Pydantic AI's ``MCPToolset`` asks the server for its tools before each model request (or
once per session, with ``cache_tools``). Asked again on a replay, a server whose tools
changed since the run recorded its steps would give the agent another tool list than
the one its recorded model responses were made with: a recorded call of a tool the
server dropped would fail. So the first listing in an agent run is the step
``<agent>:mcp:<server id>:tools``, recording each tool's definition (Pydantic AI's
``ToolDefinition``, as JSON), and later listings in the run return the recorded one, as
``cache_tools`` keeps one per session (``cache_tools=False``: each listing is a step,
``:tools-2``, ``:tools-3``...). The tools are rebuilt from the record with the public
``MCPToolset.tool_for_tool_def``; their calls are ``StepToolset``'s steps. With
``include_instructions``, the server's instructions are the step
``<agent>:mcp:<server id>:instructions`` (read once per run: they are the session's).

The session is held for the agent run, as a plain agent run holds it, but opened lazily,
by the first of these steps that runs (its failure is that step's, retried as it is),
and closed when the run ends: a replay whose steps are all recorded never connects.
This follows Pydantic AI's own durable integrations (DBOS, Temporal), whose units list
the tools and hold the server entered for the run (``'enter-in-durable-unit'``).

Listing steps of several MCP servers, which Pydantic AI lists concurrently, run one at a
time (a lock per function call), so that each is one step, in the same order on every
replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pydantic
from pydantic_ai.messages import InstructionPart
from pydantic_ai.tools import AgentDepsT, RunContext, ToolDefinition
from pydantic_ai.toolsets import ToolsetTool
from typing_extensions import Self

from stepline import _errors
from stepline._execution.call import ExecutionState
from stepline._execution.context import call_state
from stepline.ai import _steps
from stepline.ai._model import final_error
from stepline.ai._run import AgentRun, current
from stepline.ai._toolset import StepToolset

__all__ = ["MCPStepToolset"]

_TOOL_DEFS: pydantic.TypeAdapter[dict[str, ToolDefinition]] = pydantic.TypeAdapter(
    dict[str, ToolDefinition]
)
_INSTRUCTIONS: pydantic.TypeAdapter[InstructionPart | None] = pydantic.TypeAdapter(
    InstructionPart | None
)

#: one lock per function call: its MCP listing steps run one at a time
_locks: weakref.WeakKeyDictionary[ExecutionState, asyncio.Lock] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(slots=True)
class _Listing:
    """What one agent run recorded of the server."""

    run: AgentRun
    listings: int = 0
    tool_defs: dict[str, ToolDefinition] | None = None
    instructions: InstructionPart | None = None
    read_instructions: bool = False


@dataclasses.dataclass
class MCPStepToolset(StepToolset[AgentDepsT]):
    """An MCP server's toolset whose tool listing and tool calls are steps of the current
    agent run (see the module's docstring).

    Outside a durable agent's run it is the server's toolset as it is.

    Raises:
        ConfigError: the server has no ``id``, which its steps are named by.
    """

    _listing: _Listing | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    #: the run holds the server's session (a step opened it); the run's end closes it
    _held: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)
    #: entered outside a durable agent's run: the server's toolset as it is
    _plain: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.wrapped.id:
            raise _errors.ConfigError(
                "an MCP server in a DurableAgent needs an id, which names its steps "
                f"(<agent>:mcp:<id>:tools): MCPToolset(..., id='orders'); {self.wrapped.label} "
                "has none"
            )

    @property
    def id(self) -> str | None:
        """The server's id: the instructions it gives stay keyed by it."""
        return self.wrapped.id

    @property
    def server(self) -> str:
        """The server's id, as its steps carry it."""
        return str(self.wrapped.id)

    async def __aenter__(self) -> Self:
        if current() is None:
            await self.wrapped.__aenter__()
            self._plain = True
        return self

    async def __aexit__(self, *args: Any) -> bool | None:
        if self._plain or self._held:
            self._plain = self._held = False
            return await self.wrapped.__aexit__(*args)
        return None

    async def _session(self) -> None:
        """Open the server's session for the run, once, from inside a step that runs."""
        if not self._held and not self._plain:
            await self.wrapped.__aenter__()
            self._held = True

    def _of(self, run: AgentRun) -> _Listing:
        """What ``run`` recorded so far: a run begins with none of an earlier one's."""
        if self._listing is None or self._listing.run is not run:
            self._listing = _Listing(run)
        return self._listing

    async def get_tools(self, ctx: RunContext[AgentDepsT]) -> dict[str, ToolsetTool[AgentDepsT]]:
        """The server's tools, as the run's listing step recorded them."""
        run = current()
        if run is None:
            return await self.wrapped.get_tools(ctx)
        listing = self._of(run)
        caches = bool(getattr(self.wrapped, "cache_tools", True))
        if listing.tool_defs is None or not caches:
            listing.listings += 1
            step_id = f"{run.prefix}:mcp:{self.server}:tools"
            if listing.listings > 1:
                step_id = f"{step_id}-{listing.listings}"

            async def body() -> Any:
                tools = await self._in_session(run, step_id, self.wrapped.get_tools, ctx)
                defs = {name: tool.tool_def for name, tool in tools.items()}
                return _TOOL_DEFS.dump_python(defs, mode="json")

            listing.tool_defs = _TOOL_DEFS.validate_python(await self._step(run, step_id, body))
        build = self.wrapped.tool_for_tool_def  # type: ignore[attr-defined]
        tools: dict[str, ToolsetTool[AgentDepsT]] = {
            name: build(tool_def, ctx=ctx) for name, tool_def in listing.tool_defs.items()
        }
        return tools

    async def get_instructions(
        self, ctx: RunContext[AgentDepsT]
    ) -> str | InstructionPart | Sequence[str | InstructionPart] | None:
        """The server's instructions (with ``include_instructions``), as the run's step
        recorded them: those its session opened with."""
        run = current()
        if run is None or not getattr(self.wrapped, "include_instructions", False):
            return await self.wrapped.get_instructions(ctx)
        listing = self._of(run)
        if not listing.read_instructions:
            step_id = f"{run.prefix}:mcp:{self.server}:instructions"

            async def body() -> Any:
                found = await self._in_session(run, step_id, self.wrapped.get_instructions, ctx)
                if found is not None and not isinstance(found, InstructionPart):
                    raise _errors.NonRetriableError(
                        f"{step_id}: an MCP server's instructions are one InstructionPart, "
                        f"got {type(found).__name__}"
                    )
                return _INSTRUCTIONS.dump_python(found, mode="json")

            recorded = await self._step(run, step_id, body)
            listing.instructions = _INSTRUCTIONS.validate_python(recorded)
            listing.read_instructions = True
        return listing.instructions

    async def _in_session(
        self,
        run: AgentRun,
        step_id: str,
        ask: Callable[[RunContext[AgentDepsT]], Awaitable[Any]],
        ctx: RunContext[AgentDepsT],
    ) -> Any:
        """``ask(ctx)`` of the server, its session open; a failure past the agent's
        ``tool_retries`` fails the run."""
        try:
            await self._session()
            return await ask(ctx)
        except Exception as exc:
            attempt, retries = run.ctx.attempt, run.options.tool_retries
            raise final_error(exc, attempt, retries, step_id) from exc

    async def _step(self, run: AgentRun, step_id: str, body: Callable[[], Awaitable[Any]]) -> Any:
        """``body`` as the step ``step_id``, one such step of the call at a time."""
        state = call_state(run.ctx)
        lock = _locks.get(state)
        if lock is None:
            lock = _locks[state] = asyncio.Lock()
        async with lock:
            return await _steps.run_step(run.ctx, step_id, body, timeout=run.options.tool_timeout)

    async def _call(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        """The server's tool call, in the run's session (opened now if no step did)."""
        await self._session()
        return await self.wrapped.call_tool(name, tool_args, ctx, tool)
