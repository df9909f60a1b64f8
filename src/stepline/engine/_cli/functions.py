"""``stepline functions list|pause|resume``: the registered functions, and pausing one.

Over the engine's REST API (``GET /v1/functions``, ``POST /v1/functions/{id}/pause``,
``POST /v1/functions/{id}/resume``), through the SDK's own flows, with the same
``--url``/``--signing-key``/``--json`` options as ``stepline runs``. A function is named by
its full id or by its id in its app, as ``runs list -f`` takes it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO

from stepline import _settings
from stepline._api import pause as _pause
from stepline._api import runs as _runs
from stepline._transport import effects, performers
from stepline.engine._cli import lookups

#: The top-level command this module serves.
COMMAND = "functions"
#: ``functions resume`` of a function that was not paused: nothing changed.
EXIT_NOT_PAUSED = 3


def add_parser(commands: Any, common: Any) -> None:
    """Add ``functions`` to the CLI's sub-command parsers; ``common(sub)`` adds shared options."""
    functions = commands.add_parser(
        "functions", help="list the registered functions; pause or resume one"
    )
    actions = functions.add_subparsers(dest="action", required=True, metavar="action")
    listing = actions.add_parser("list", help="every registered function, and which are paused")
    pause = actions.add_parser(
        "pause",
        help="pause a function: its runs are created but wait; runs in flight stop "
        "before their next call",
    )
    pause.add_argument("function_id", help="its full id, or its id in its app")
    pause.add_argument(
        "--skip-crons",
        action="store_true",
        help="cron ticks start no run while paused (default: they start runs that wait)",
    )
    pause.add_argument("--reason", help="why (shown by `functions list` and the dashboard)")
    resume = actions.add_parser(
        "resume",
        help="resume a paused function: what waited runs, oldest first",
        epilog=f"exit status: 0 resumed; {EXIT_NOT_PAUSED} it was not paused; 1 unknown "
        "function or engine error",
    )
    resume.add_argument("function_id", help="its full id, or its id in its app")
    for sub in (listing, pause, resume):
        common(sub)


def main(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run ``stepline functions ...`` (the caller reports errors and unknown functions)."""
    if args.action == "list":
        found = effects.drive_sync(
            _runs.call(settings, "GET", "/v1/functions", what="functions"),
            transport.perform,
        )
        if args.json:
            _print_json(out, found)
        else:
            out.write(functions_table(found) + "\n")
        return 0
    function_id = effects.drive_sync(
        lookups.function_id_flow(settings, args.function_id), transport.perform
    )
    if args.action == "pause":
        crons: Literal["queue", "skip"] = "skip" if args.skip_crons else "queue"
        flow = _pause.pause_flow(settings, function_id, crons, args.reason)
        paused = effects.drive_sync(flow, transport.perform)
        if args.json:
            _print_json(out, {"function_id": function_id, "paused": _wire(paused)})
        else:
            out.write(f"paused {function_id} (cron ticks: {_crons(paused.crons)})\n")
        return 0
    resumed = effects.drive_sync(_pause.resume_flow(settings, function_id), transport.perform)
    if args.json:
        _print_json(out, {"function_id": function_id, "resumed": resumed})
    elif resumed:
        out.write(f"resumed {function_id}\n")
    else:
        print(f"stepline functions resume: {function_id} was not paused", file=err)
    return 0 if resumed else EXIT_NOT_PAUSED


def functions_table(functions: Sequence[Mapping[str, Any]]) -> str:
    """The functions as an aligned table, paused ones with since when and why (pure)."""
    if not functions:
        return "no functions: sync an app first (stepline dev -u URL, or POST /v1/apps/sync)"
    rows = [("FUNCTION", "APP", "TRIGGERS", "PAUSED")]
    for fn in functions:
        rows.append(
            (
                str(fn.get("function_id")),
                str(fn.get("app_id")),
                _triggers(fn.get("triggers")),
                _paused_text(fn.get("paused")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _triggers(raw: object) -> str:
    names = []
    for trigger in raw if isinstance(raw, list) else []:
        if isinstance(trigger, dict):
            names.append(str(trigger.get("event") or f"cron {trigger.get('cron')}"))
    return ", ".join(names) or "-"


def _paused_text(raw: object) -> str:
    if not isinstance(raw, dict):
        return "-"
    text = f"since {raw.get('at')} (cron ticks: {_crons(str(raw.get('crons')))})"
    return f"{text}: {raw['reason']}" if raw.get("reason") else text


def _crons(policy: str) -> str:
    return "skipped" if policy == "skip" else "queued"


def _wire(paused: _pause.PausedFunction) -> dict[str, Any]:
    at = paused.paused_at.isoformat().replace("+00:00", "Z")
    return {"at": at, "crons": paused.crons, "reason": paused.reason}


def _print_json(out: TextIO, value: object) -> None:
    out.write(json.dumps(value, indent=2, default=str) + "\n")
