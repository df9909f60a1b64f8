"""``stepline runs list|show|cancel`` and ``stepline send``: a quick look at a live engine.

Everything goes over the engine's REST and event APIs, through the SDK's own flows
(``_runs``, ``_sender``) with a blocking transport; the tables are pure functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO, TypeVar

from stepline import _effects, _errors, _event, _runs, _sender, _settings, _transport

T = TypeVar("T")

#: The top-level commands this module serves.
COMMANDS = ("runs", "send")
_STATUSES = {s.value.lower(): s for s in _runs.RunStatus}
_URL_VARS = (
    "STEPLINE_API_BASE_URL",
    "INNGEST_API_BASE_URL",
    "STEPLINE_BASE_URL",
    "INNGEST_BASE_URL",
)


def add_parsers(commands: Any) -> None:
    """Add ``runs`` and ``send`` to the CLI's sub-command parsers."""
    runs = commands.add_parser("runs", help="list, show or cancel runs of a running engine")
    actions = runs.add_subparsers(dest="action", required=True, metavar="action")
    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument("-f", "--function", help="only this function (its full id)")
    listing.add_argument(
        "-s",
        "--status",
        action="append",
        type=_status,
        help="only runs with this status (repeatable): queued, running, completed, ...",
    )
    listing.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--cursor", help="the next-page cursor a previous list printed")
    show = actions.add_parser("show", help="one run and its steps")
    show.add_argument("run_id")
    cancel = actions.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run_id")
    send = commands.add_parser("send", help="send an event to a running engine")
    send.add_argument("name", help="the event name, e.g. app/user.signup")
    send.add_argument("-d", "--data", default="{}", help="the event data, a JSON object")
    send.add_argument("--id", default="", help="the event id (an idempotency key)")
    send.add_argument("--event-key", help="event key (env STEPLINE_EVENT_KEY)")
    for sub in (listing, show, cancel, send):
        sub.add_argument(
            "--url",
            help="the engine (env STEPLINE_API_BASE_URL; default http://127.0.0.1:8288)",
        )
        sub.add_argument(
            "--signing-key", help="for `stepline start` engines (env STEPLINE_SIGNING_KEY)"
        )
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``stepline runs ...`` or ``stepline send``.

    Returns:
        0 on success; 1 if the engine refused, was unreachable or the run is unknown;
        2 for bad input.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        settings = _resolve(args, os.environ if environ is None else environ)
    except _errors.SteplineError as exc:
        print(f"stepline {args.command}: {exc}", file=err)
        return 2
    transport = _transport.SyncTransport()
    try:
        if args.command == "send":
            return _send(args, settings, transport, out, err)
        return _runs_command(args, settings, transport, out)
    except _runs.RunNotFoundError as exc:
        print(f"stepline {args.command}: not found: {exc}", file=err)
        return 1
    except _errors.SteplineError as exc:
        print(f"stepline {args.command}: {exc}", file=err)
        return 1
    finally:
        transport.close()


def _resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> _settings.Settings:
    url = args.url or next((environ[v] for v in _URL_VARS if environ.get(v)), None)
    return _settings.resolve(
        app_id="stepline-cli",
        environ=environ,
        is_production=False,  # the mode only picks defaults; the keys decide access
        signing_key=args.signing_key,
        event_key=getattr(args, "event_key", None),
        api_base_url=url or _settings.DEV_BASE_URL,
        event_api_base_url=url or _settings.DEV_BASE_URL,
        send_max_attempts=2,
    )


def _run(flow: _effects.Flow[T], transport: _transport.SyncTransport) -> T:
    return _effects.drive_sync(flow, transport.perform)


def _runs_command(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: _transport.SyncTransport,
    out: TextIO,
) -> int:
    if args.action == "list":
        flow = _runs.list_flow(
            settings,
            function_id=args.function,
            status=args.status or (),
            limit=max(1, min(args.limit, 500)),
            cursor=args.cursor,
        )
        found, cursor = _run(flow, transport)
        if args.json:
            _print_json(out, {"data": [r.to_json() for r in found], "next_cursor": cursor})
        else:
            out.write(runs_table(found, now=_now()) + "\n")
            if cursor:
                out.write(f"more: --cursor {cursor}\n")
        return 0
    if args.action == "show":
        run = _run(_runs.get_flow(settings, args.run_id), transport)
        steps = _run(_runs.steps_flow(settings, args.run_id), transport)
        if args.json:
            _print_json(out, {**run.to_json(), "steps": [s.to_json() for s in steps]})
        else:
            out.write(run_detail(run, steps, now=_now()) + "\n")
        return 0
    status = _run(_runs.cancel_flow(settings, args.run_id), transport)
    if args.json:
        _print_json(out, {"run_id": args.run_id, "status": status.value})
    else:
        out.write(f"{args.run_id} {status.value}\n")
    return 0


def _send(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: _transport.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        print(f"stepline send: --data is not JSON: {exc}", file=err)
        return 2
    if not isinstance(data, dict):
        print("stepline send: --data must be a JSON object", file=err)
        return 2
    event = _event.Event(name=args.name, data=data, id=args.id)
    ids = _sender.send_sync(transport, settings, [event])
    if args.json:
        _print_json(out, {"ids": ids})
    else:
        out.write("\n".join(ids) + "\n")
    return 0


# -- rendering (pure) -------------------------------------------------------------------


def runs_table(runs: Sequence[_runs.RunInfo], *, now: dt.datetime) -> str:
    """Runs as an aligned table: id, function, status, age, duration."""
    if not runs:
        return "no runs"
    rows = [("RUN ID", "FUNCTION", "STATUS", "CREATED", "DURATION")]
    for run in runs:
        rows.append(
            (
                run.run_id,
                run.function_id,
                run.status.value,
                _ago(run.created_at, now),
                _duration(run.started_at or run.created_at, run.ended_at, now),
            )
        )
    return _table(rows)


def run_detail(run: _runs.RunInfo, steps: Sequence[_runs.StepInfo], *, now: dt.datetime) -> str:
    """One run: its fields, its output or error, and its steps in order."""
    lines = [
        f"Run       {run.run_id}",
        f"Function  {run.function_id}",
        f"Status    {run.status.value}",
        f"Created   {_iso(run.created_at)} ({_ago(run.created_at, now)})",
    ]
    if run.started_at is not None:
        lines.append(f"Started   {_iso(run.started_at)}")
    if run.ended_at is not None:
        took = _duration(run.started_at or run.created_at, run.ended_at, now)
        lines.append(f"Ended     {_iso(run.ended_at)} (took {took})")
    if run.waiting:
        lines.append(f"Waiting   {json.dumps(dict(run.waiting), default=str)}")
    if run.cancel_reason:
        lines.append(f"Reason    {run.cancel_reason}")
    if run.error is not None:
        lines.append(f"Error     {run.error.get('name', 'Error')}: {run.error.get('message', '')}")
    elif run.status is _runs.RunStatus.COMPLETED:
        lines.append(f"Output    {_short(run.output)}")
    if steps:
        rows = [("STEP", "OP", "STATUS", "ATTEMPTS", "DURATION")]
        for step in steps:
            rows.append(
                (
                    step.name,
                    step.op,
                    step.status,
                    str(step.attempts),
                    _duration(step.started_at, step.ended_at, now),
                )
            )
        lines += ["", _table(rows)]
    else:
        lines += ["", "no steps"]
    return "\n".join(lines)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _ago(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "-"
    return f"{_span((now - when).total_seconds())} ago"


def _duration(start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime) -> str:
    if start is None:
        return "-"
    if end is None:
        return f"{_span((now - start).total_seconds())}…"
    return _span((end - start).total_seconds())


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def _iso(when: dt.datetime | None) -> str:
    return "-" if when is None else when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _short(value: object, limit: int = 200) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_json(out: TextIO, value: object) -> None:
    out.write(json.dumps(value, indent=2, default=str) + "\n")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _status(text: str) -> _runs.RunStatus:
    found = _STATUSES.get(text.strip().lower())
    if found is None:
        known = ", ".join(s.value.lower() for s in _runs.RunStatus)
        raise argparse.ArgumentTypeError(f"unknown status {text!r}; want one of {known}")
    return found
