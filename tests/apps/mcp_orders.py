"""A tiny MCP server over stdio, for ``tests/ai/test_mcp.py``: what it is asked, counted.

``python tests/apps/mcp_orders.py <log> <tools>``. Each session is a process of its own
(the client starts it); it appends a line ``<pid> <what>`` to ``<log>`` when it starts
(``session``), for each listing of its tools (``list``) and each tool call
(``call <tool>``), so counts survive the process. It offers the tools whose names the
file ``<tools>`` lists (comma-separated), read when the session starts: a test drops a
tool between sessions by rewriting it. While a file ``fail-once`` is beside the log,
``order_status`` removes it and fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

LOG = Path(sys.argv[1])
OFFERED = set(Path(sys.argv[2]).read_text().split(","))
FAIL_ONCE = LOG.parent / "fail-once"


def _note(what: str) -> None:
    with LOG.open("a") as log:
        log.write(f"{os.getpid()} {what}\n")


class Orders(MCPServer[Any]):
    """An MCP server that notes each listing and each call."""

    async def list_tools(self) -> Any:
        _note("list")
        return await super().list_tools()

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        _note(f"call {name}")
        return await super().call_tool(name, arguments, context)


server = Orders("orders", instructions="Orders are numbered.")


def order_status(order_id: str) -> str:
    """The status of an order."""
    if FAIL_ONCE.exists():
        FAIL_ONCE.unlink()
        raise RuntimeError("the order database is down")
    return f"order {order_id} shipped on Monday"


def refund(order_id: str, cents: int) -> str:
    """Refund an order, in cents."""
    return f"refunded {cents} cents on order {order_id}"


for tool in (order_status, refund):
    if tool.__name__ in OFFERED:
        server.tool()(tool)


if __name__ == "__main__":
    _note("session")
    server.run()
