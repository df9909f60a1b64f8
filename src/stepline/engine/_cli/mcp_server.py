"""``stepline mcp``: serve the engine's REST API as MCP tools over stdio, for an assistant.

The engine is the one the CLI's other commands reach (``--url``, else
``STEPLINE_API_BASE_URL``, else the local dev engine) with the signing key the REST API
takes (``--signing-key``, else ``STEPLINE_SIGNING_KEY``). Stdout carries the protocol, so
problems go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from stepline import _errors, _extras, _settings

COMMAND = "mcp"


def add_parser(commands: Any) -> None:
    """Add ``mcp`` to the CLI's sub-command parsers."""
    mcp = commands.add_parser(
        COMMAND,
        help="the engine's runs, events and functions as MCP tools for an assistant (stdio)",
    )
    mcp.add_argument("--url", help="the engine's URL (env STEPLINE_API_BASE_URL)")
    mcp.add_argument("--signing-key", help="the engine's signing key (env STEPLINE_SIGNING_KEY)")
    mcp.add_argument(
        "--allow-writes",
        action="store_true",
        help="also offer the tools that change something: cancel, replay, signal, pause, resume",
    )


def main(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Serve until the client closes stdin.

    Returns:
        0 when the client is done; 2 without the ``mcp`` package or with bad settings.
    """
    missing = _extras.problem("stepline mcp", "mcp", ("mcp",))
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    try:
        settings = _settings.resolve(
            app_id="stepline-mcp",
            environ=os.environ if environ is None else environ,
            signing_key=args.signing_key,
            api_base_url=args.url,
            event_api_base_url=args.url,
            unset_mode="dev",
        )
        settings.require_engine("", option="--url")
    except _errors.SteplineError as exc:
        print(f"stepline mcp: {exc}", file=sys.stderr)
        return 2
    from stepline._mcp import server

    server.build(settings, allow_writes=args.allow_writes).run("stdio")
    return 0
