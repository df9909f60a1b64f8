"""``stepline apps versions|retire``: an app's registered versions, and retiring one.

Over the engine's REST API (``GET /v1/apps/{app}/versions``, ``DELETE
/v1/apps/{app}/versions/{version}``), with the same ``--url``/``--signing-key``/``--json``
options as ``stepline runs``; and the ``runs list --version`` page flow.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from stepline import _settings
from stepline._api import runs as _runs
from stepline._transport import effects, performers

#: The top-level command this module serves.
COMMAND = "apps"
#: ``apps retire`` refused: runs that started on the version are live (or it is the latest).
EXIT_REFUSED = 4


def add_parser(commands: Any, common: Any) -> None:
    """Add ``apps`` to the CLI's sub-command parsers; ``common(sub)`` adds the shared options."""
    apps = commands.add_parser("apps", help="an app's registered versions; retire one")
    actions = apps.add_subparsers(dest="action", required=True, metavar="action")
    versions = actions.add_parser(
        "versions", help="an app's versions: URL, latest, runs still live on each"
    )
    versions.add_argument("app_id")
    retire = actions.add_parser(
        "retire",
        help="unregister one version of an app",
        epilog=f"exit status: 0 retired; {EXIT_REFUSED} refused (runs that started on it "
        "are still live: --force moves them to the latest version; or it is the latest "
        "version); 1 unknown app or version, or engine error",
    )
    retire.add_argument("app_id")
    retire.add_argument("version")
    retire.add_argument(
        "--force",
        action="store_true",
        help="move the runs still live on it to the latest version (each gets a notice)",
    )
    for sub in (versions, retire):
        common(sub)


def main(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run ``stepline apps ...`` (errors other than a refusal are the caller's to report)."""
    app = _runs.quote(args.app_id)
    if args.action == "versions":
        found = effects.drive_sync(
            _runs.call(settings, "GET", f"/v1/apps/{app}/versions", what=args.app_id),
            transport.perform,
        )
        if args.json:
            _print_json(out, found)
        else:
            out.write(versions_table(found) + "\n")
        return 0
    path = f"/v1/apps/{app}/versions/{_runs.quote(args.version)}"
    if args.force:
        path += "?force=true"
    try:
        done = effects.drive_sync(
            _runs.call(settings, "DELETE", path, what=f"{args.app_id} {args.version}"),
            transport.perform,
        )
    except _runs.RunNotStartedError as exc:  # the engine's 409: live runs, or the latest
        print(f"stepline apps retire: refused: {exc}", file=err)
        return EXIT_REFUSED
    if args.json:
        _print_json(out, done)
    else:
        moved = int(done.get("moved") or 0)
        tail = f"; {moved} live run(s) moved to {done.get('to')}" if moved else ""
        out.write(f"retired {args.app_id} {args.version}{tail}\n")
    return 0


def versions_table(versions: Sequence[Mapping[str, Any]]) -> str:
    """An app's versions as an aligned table, newest first (pure)."""
    if not versions:
        return "no versions: the app registered without one (Client(app_version=...))"
    rows = [("VERSION", "LATEST", "LIVE RUNS", "SYNCED", "URL")]
    for v in versions:
        rows.append(
            (
                str(v.get("version")),
                "yes" if v.get("latest") else "",
                str(v.get("live_runs", 0)),
                str(v.get("synced_at") or "-"),
                str(v.get("url")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def notices_text(notices: Sequence[Mapping[str, Any]]) -> list[str]:
    """A run's notices, one line each: kind and message (any kind, by its message)."""
    return [f"Notice    {n.get('kind', 'notice')}: {n.get('message', '')}" for n in notices]


def _print_json(out: TextIO, value: object) -> None:
    """``value`` as indented JSON on ``out``, what ``--json`` prints (other types as text)."""
    out.write(json.dumps(value, indent=2, default=str) + "\n")
