"""The MCP server of ``stepline mcp``: one tool per ``tools.Tool``, each one REST call.

The calls go through the SDK's REST flow (``stepline._api.runs.call``): the same
``Authorization: Bearer <signing key>`` a client sends, the same refusals. A refusal, an
unknown run or an unreachable engine is the tool's error (the assistant reads it), never
the server's end; a 401 says which key to pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import pydantic
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from stepline import _errors, _settings
from stepline._api import runs as _runs
from stepline._identity import VERSION
from stepline._mcp import tools
from stepline._transport import effects, performers

__all__ = ["build"]

INSTRUCTIONS = (
    "Tools over a Stepline engine's REST API: its runs, their steps and errors, events, "
    "functions and their metrics. {writes}"
)
_READ_ONLY = (
    "Read-only: tools that change something (cancel, replay, signal, pause, resume) are "
    "offered only when the server is started with --allow-writes."
)
_WRITES = "Tools that change something (cancel, replay, signal, pause, resume) are enabled."
_KEY_HINT = (
    " (the engine wants its signing key: pass --signing-key or set STEPLINE_SIGNING_KEY "
    "where the MCP server starts)"
)


def build(settings: _settings.Settings, *, allow_writes: bool = False) -> MCPServer[Any]:
    """The MCP server for the engine ``settings`` names.

    Args:
        settings: the SDK's settings: the engine's URL and the signing key.
        allow_writes: offer the tools that change something, too.

    Returns:
        The server; ``run("stdio")`` serves it.
    """
    server: MCPServer[Any] = MCPServer(
        name="stepline",
        version=VERSION,
        instructions=INSTRUCTIONS.format(writes=_WRITES if allow_writes else _READ_ONLY),
    )
    transport = performers.AsyncTransport()
    for tool in (*tools.READ, *(tools.WRITE if allow_writes else ())):
        server.add_tool(
            _function(tool, settings, transport),
            name=tool.name,
            description=tool.description,
            annotations=ToolAnnotations(read_only_hint=not tool.writes, open_world_hint=False),
        )
    return server


def _function(
    tool: tools.Tool, settings: _settings.Settings, transport: performers.AsyncTransport
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """An async function taking ``tool``'s parameters by name, making its REST call."""

    async def call(**given: Any) -> dict[str, Any]:
        return await invoke(tool, given, settings, transport)

    parameters = [
        inspect.Parameter(
            p.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if p.default is tools.REQUIRED else p.default,
            annotation=Annotated[p.type, pydantic.Field(description=p.description)],
        )
        for p in tool.params
    ]
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=dict[str, Any]
    )
    call.__name__ = tool.name
    return call


async def invoke(
    tool: tools.Tool,
    given: Mapping[str, Any],
    settings: _settings.Settings,
    transport: performers.AsyncTransport,
) -> dict[str, Any]:
    """Make ``tool``'s REST call with ``given``; its answer, trimmed for an assistant.

    Raises:
        ToolError: the engine refused, does not know the run, or cannot be reached.
    """
    method, path, body = tool.request(given)
    flow = _runs.call(settings, method, path, body, what=tool.name, whole=True)
    try:
        answer = await effects.drive_async(flow, transport.perform)
    except _errors.SteplineError as exc:
        status = getattr(exc, "http_status", 0)
        raise ToolError(f"{exc}{_KEY_HINT if status == 401 else ''}") from None
    shown = tools.trimmed(answer)
    return shown if isinstance(shown, dict) else {"data": shown}
