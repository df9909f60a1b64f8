"""``stepline runs list|show|cancel``, ``stepline send`` and ``stepline apps``: a quick look
at a live engine.

Everything goes over the engine's REST and event APIs, through the SDK's own flows
(``_runs``, ``_sender``) with a blocking transport; the tables are pure functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO, TypeVar

from stepline import _errors, _event, _settings
from stepline._api import runs as _runs
from stepline._api import sender
from stepline._transport import effects, performers
from stepline.engine._cli import apps, deploy, functions, lookups
from stepline.engine._cli import bulk as _bulk
from stepline.engine._cli import signals as _signals

T = TypeVar("T")

#: The top-level commands this module serves.
COMMANDS = ("runs", "send", apps.COMMAND, functions.COMMAND, deploy.COMMAND)
#: ``runs cancel`` on a run that had already ended: nothing was cancelled.
EXIT_ENDED = 3
#: How long ``send`` looks for the runs its event started, and ``show --watch`` polls.
SEND_LOOK_SECONDS = 2.0
WATCH_INTERVAL = 0.5
_STATUSES = {s.value.lower(): s for s in _runs.RunStatus}


def add_parsers(commands: Any) -> None:
    """Add ``runs`` and ``send`` to the CLI's sub-command parsers."""
    runs = commands.add_parser("runs", help="list, show or cancel runs of a running engine")
    actions = runs.add_subparsers(dest="action", required=True, metavar="action")
    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument(
        "-f", "--function", help="only this function: its full id, or its id in its app"
    )
    listing.add_argument(
        "-s",
        "--status",
        action="append",
        type=_status,
        help="only runs with this status (repeatable): queued, running, completed, ...",
    )
    listing.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--cursor", help="the next-page cursor a previous list printed")
    listing.add_argument(
        "--version", help="only runs started on this app version (stepline apps versions APP)"
    )
    listing.add_argument(
        "--attr",
        action=_bulk.AttributeArg,
        metavar="NAME=VALUE",
        help="only runs with this attribute (repeatable: every one must match)",
    )
    show = actions.add_parser("show", help="one run and its steps")
    show.add_argument("run_id")
    show.add_argument(
        "-w", "--watch", action="store_true", help="follow the run live until it ends"
    )
    cancel = actions.add_parser(
        "cancel",
        help="cancel a run, or every run matching filters (a bulk action)",
        epilog=f"exit status: 0 cancelled; {EXIT_ENDED} the run had already ended (nothing "
        f"cancelled); {_bulk.EXIT_STOPPED} a bulk action stopped early; 1 unknown run or error",
    )
    cancel.add_argument("run_id", nargs="?")
    replay = actions.add_parser("replay", help="replay a run (from a step), or runs by filters")
    replay.add_argument("run_id", nargs="?")
    replay.add_argument("--from-step", help="reuse the steps completed before this one")
    for sub in (cancel, replay):
        _bulk.add_filters(sub, _status)
    send = commands.add_parser("send", help="send an event to a running engine")
    send.add_argument("name", help="the event name, e.g. app/user.signup")
    send.add_argument("-d", "--data", default="{}", help="the event data, a JSON object")
    send.add_argument("--id", default="", help="the event id (an idempotency key)")
    send.add_argument("--event-key", help="event key (env STEPLINE_EVENT_KEY)")
    exporting = deploy.add_export(actions)
    for sub in (listing, show, cancel, replay, send, exporting):
        _common(sub)
    _signals.add_parser(actions, _common)  # runs signal RUN_ID NAME
    apps.add_parser(commands, _common)
    functions.add_parser(commands, _common)  # functions list|pause|resume
    deploy.add_parser(commands, _common)  # deploy check


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--url",
        help="the engine (env STEPLINE_API_BASE_URL, STEPLINE_BASE_URL or "
        "STEPLINE_DEV=URL; default http://127.0.0.1:8288)",
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
        2 for bad input; 3 (``EXIT_ENDED``) for ``runs cancel`` of a run that had ended.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        settings = _resolve(args, os.environ if environ is None else environ)
    except _errors.SteplineError as exc:
        print(f"stepline {args.command}: {exc}", file=err)
        return 2
    transport = performers.SyncTransport()
    try:
        if args.command == "send":
            return _send(args, settings, transport, out, err)
        if args.command == apps.COMMAND:
            return apps.main(args, settings, transport, out, err)
        if args.command == functions.COMMAND:
            return functions.main(args, settings, transport, out, err)
        if args.command == deploy.COMMAND:
            return deploy.main(args, settings, transport, out, err)
        return _runs_command(args, settings, transport, out, err)
    except lookups.AmbiguousFunctionError as exc:
        print(f"stepline {args.command}: {exc}", file=err)
        return 2
    except lookups.UnknownFunctionError as exc:
        print(f"stepline {args.command}: {exc}", file=err)
        return 1
    except _runs.RunNotFoundError as exc:
        print(f"stepline {args.command}: not found: {exc}", file=err)
        return 1
    except _errors.SteplineError as exc:
        print(f"stepline {args.command}: {exc}{_key_hint(exc)}", file=err)
        return 1
    finally:
        transport.close()


def _resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> _settings.Settings:
    """The SDK's settings from ``--url`` and the SDK's variables (``STEPLINE_DEV``...).

    With no ``STEPLINE_DEV`` the CLI talks to the local engine; ``STEPLINE_DEV=0`` (a
    production shell) needs the engine's URL, as an app does.
    """
    settings = _settings.resolve(
        app_id="stepline-cli",
        environ=environ,
        signing_key=args.signing_key,
        event_key=getattr(args, "event_key", None),
        api_base_url=args.url,
        event_api_base_url=args.url,
        send_max_attempts=2,
        unset_mode="dev",
    )
    settings.require_engine("", option="--url")  # main names the command
    return settings


def _key_hint(exc: _errors.SteplineError) -> str:
    """What to pass when the engine refused the credentials (401), else nothing."""
    if getattr(exc, "http_status", 0) != 401:
        return ""
    if isinstance(exc, _errors.SendEventError):
        return " (pass the engine's event key: --event-key or STEPLINE_EVENT_KEY)"
    return " (pass the engine's signing key: --signing-key or STEPLINE_SIGNING_KEY)"


def _run(flow: effects.Flow[T], transport: performers.SyncTransport) -> T:
    return effects.drive_sync(flow, transport.perform)


def _runs_command(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    if args.action == "list":
        function, known = args.function, None
        if function:  # the short id (``hello`` for ``app-hello``) when only one app has it
            known = _run(lookups.known_functions_flow(settings), transport)
            function = lookups.resolve_function(function, known)
        page = {
            "function_id": function,
            "status": args.status or (),
            "limit": max(1, min(args.limit, 500)),
            "cursor": args.cursor,
        }
        flow = _runs.list_flow(settings, version=args.version, attributes=args.attr, **page)
        found, cursor = _run(flow, transport)
        if known is not None and function not in known and not found and not args.cursor:
            # no such function and no run of it (a removed function's runs still list):
            # most likely a typo, which an empty table would hide
            raise lookups.unknown_function(args.function, known, settings.api_base_url)
        if args.json:
            _print_json(out, {"data": [r.to_json() for r in found], "next_cursor": cursor})
        else:
            out.write(runs_table(found, now=_now()) + "\n")
            if cursor:
                out.write(f"more: --cursor {cursor}\n")
        return 0
    if args.action == "show":
        return _show(args, settings, transport, out)
    if args.action == "export":
        return deploy.export(args, settings, transport, out)
    if args.action == "signal":
        return _signals.main(args, settings, transport, out, err)
    if args.action == "replay" or _bulk.wanted(args) or not args.run_id:
        return _bulk.main(args, settings, transport, out, err)
    before = _run(_runs.get_flow(settings, args.run_id), transport)
    status = before.status
    if not before.status.terminal:
        status = _run(_runs.cancel_flow(settings, args.run_id), transport)
    ended = before.status.terminal or status is not _runs.RunStatus.CANCELLED
    if args.json:
        _print_json(out, {"run_id": args.run_id, "status": status.value, "cancelled": not ended})
    else:
        out.write(f"{args.run_id} {status.value}\n")
    if ended:  # it finished first: say so, and exit with a code scripts can tell apart
        print(
            f"stepline runs cancel: run {args.run_id} had already ended ({status.value}): "
            "nothing to cancel",
            file=err,
        )
        return EXIT_ENDED
    return 0


def _show(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
) -> int:
    """One run; with ``--watch``, again at each change until it ends (JSON: one per line)."""
    shown = ""
    while True:
        run = _run(_runs.get_flow(settings, args.run_id), transport)
        steps, waits = _run(lookups.steps_flow(settings, args.run_id), transport)
        if args.json:
            view = {**run.to_json(), "steps": [s.to_json() for s in steps]}
            text = json.dumps(view, default=str) if args.watch else json.dumps(view, indent=2)
        else:
            text = run_detail(run, steps, now=_now(), waits=waits)
        # the durations of live steps tick: compare without them so only changes print
        # (a failed attempt changes a retrying step's attempt and time, not its status)
        state = json.dumps([run.status.value, [(s.id, s.status, s.attempts) for s in steps]])
        if state != shown:
            if shown and not args.json:
                out.write("\n")
            out.write(text + "\n")
            out.flush()
            shown = state
        if not args.watch or run.status.terminal:
            return 0
        time.sleep(WATCH_INTERVAL)


def _send(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
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
    try:
        event = _event.Event(name=args.name, data=data, id=args.id)
    except ValueError as exc:
        print(f"stepline send: {exc}", file=err)
        return 2
    ids = sender.send_sync(transport, settings, [event])
    runs, skipped = _started(settings, transport, ids[0])
    if args.json:
        started = [{"run_id": r.run_id, "function_id": r.function_id} for r in runs]
        _print_json(out, {"ids": ids, "runs": started, "skipped": skipped})
    else:
        out.write("\n".join([*ids, *lookups.started_text(ids[0], runs, skipped)]) + "\n")
    return 0


def _started(
    settings: _settings.Settings, transport: performers.SyncTransport, event_id: str
) -> tuple[list[_runs.RunInfo], list[dict[str, Any]]]:
    """The runs the event started: fan-out may be queued, so look for a moment."""
    deadline = time.monotonic() + SEND_LOOK_SECONDS
    while True:
        runs, skipped = _run(lookups.event_runs_flow(settings, event_id), transport)
        if runs or skipped or time.monotonic() >= deadline:
            return runs, skipped
        time.sleep(0.1)


# -- rendering (pure) -------------------------------------------------------------------


def runs_table(runs: Sequence[_runs.RunInfo], *, now: dt.datetime) -> str:
    """Runs as an aligned table: id, function, status, age, duration."""
    if not runs:
        return "no runs"
    versioned = any(run.app_version for run in runs)  # a column only when apps have versions
    rows = [("RUN ID", "FUNCTION", "STATUS", "CREATED", "DURATION", *(("VERSION",) * versioned))]
    for run in runs:
        rows.append(
            (
                run.run_id,
                run.function_id,
                run.status.value,
                _ago(run.created_at, now),
                _duration(run.started_at or run.created_at, run.ended_at, now),
                *((run.app_version or "-",) * versioned),
            )
        )
    return _table(rows)


def run_detail(
    run: _runs.RunInfo,
    steps: Sequence[_runs.StepInfo],
    *,
    now: dt.datetime,
    waits: Mapping[str, Mapping[str, Any]] | None = None,
    tz: dt.tzinfo | None = None,
) -> str:
    """One run: its fields, what it waits for, its output or error, its steps in order.

    A step's op is its kind (``StepRun`` for a failed ``step.run``) and its status its
    state in words (``Retrying at 14:03:12 (attempt 2 of 4)``, the time in ``tz``; None:
    the machine's local time zone).
    """
    lines = [
        f"Run       {run.run_id}",
        f"Function  {run.function_id}",
        f"Status    {run.status.value}",
        f"Created   {_iso(run.created_at)} ({_ago(run.created_at, now)})",
    ]
    if run.app_version is not None:
        lines.insert(2, f"Version   {run.app_version}")
    if run.attributes:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(run.attributes.items()))
        lines.append(f"Attrs     {pairs}")
    if run.started_at is not None:
        lines.append(f"Started   {_iso(run.started_at)}")
    if run.ended_at is not None:
        took = _duration(run.started_at or run.created_at, run.ended_at, now)
        lines.append(f"Ended     {_iso(run.ended_at)} (took {took})")
    if run.replay_of is not None:
        start = f" from step {run.replay_from_step!r}" if run.replay_from_step else ""
        lines.append(f"Replay of {run.replay_of}{start}")
    if run.waiting:
        lines.append(f"Waiting   {json.dumps(dict(run.waiting), default=str)}")
    lines += lookups.waits_text(run, steps, waits or {})
    if run.cancel_reason:
        lines.append(f"Reason    {run.cancel_reason}")
    lines += apps.notices_text(run.notices)
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
                    step.kind or step.op,
                    step.state(tz),
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
