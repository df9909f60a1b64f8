"""``stepline runs cancel|replay`` over a filter (bulk actions), and ``runs replay RUN_ID
[--from-step NAME]``.

``stepline runs cancel --function F --status running --since 2h --if 'event.data.plan ==
"free"'`` asks the engine for a bulk cancel and follows its progress (a spinner with the
counts on a terminal; the summary line, or JSON, either way) until it ends, unless
``--no-wait``. Everything goes over the REST API through the client's own flows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, TextIO

from stepline import _settings
from stepline._api import bulk as _bulk
from stepline._api import runs as _runs
from stepline._protocol import durations
from stepline._transport import effects, performers
from stepline.engine._cli import lookups
from stepline.engine._cli import progress as _progress

#: exit status of a bulk action that ended other than completed (cancelled, failed)
EXIT_STOPPED = 4
_FILTERS = ("function", "status", "since", "until", "event", "if_exp", "attr")


def add_filters(parser: argparse.ArgumentParser, status: Any) -> None:
    """The filter options of a bulk cancel or replay (``status`` parses a run status)."""
    group = parser.add_argument_group("bulk: act on every run matching all of")
    group.add_argument("-f", "--function", help="the function: its full id, or its id in its app")
    group.add_argument(
        "-s", "--status", action="append", type=status, help="a run status (repeatable)"
    )
    group.add_argument("--since", help="created at or after: RFC 3339, unix seconds, or 2h ago")
    group.add_argument("--until", help="created at or before (same forms)")
    group.add_argument("--event", help="the trigger event's name")
    group.add_argument(
        "--if", dest="if_exp", metavar="EXPR", help="a CEL expression over the trigger `event`"
    )
    group.add_argument(
        "--attr",
        action=AttributeArg,
        metavar="NAME=VALUE",
        help="a run attribute (repeatable: every one must match)",
    )
    group.add_argument("--idempotency-key", help="asking again with it answers the same action")
    group.add_argument("--no-wait", action="store_true", help="print the action's id and exit")


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``runs cancel|replay`` asks for a bulk action (filters, no run id)."""
    return any(getattr(args, name, None) for name in _FILTERS)


def main(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run a bulk cancel or replay, or replay one run; the exit status."""
    command = f"stepline runs {args.action}"
    if args.run_id and wanted(args):
        print(f"{command}: give a run id or filters, not both", file=err)
        return 2
    if args.run_id:
        return _replay_one(args, settings, transport, out)
    if not wanted(args):
        print(f"{command}: give a run id, or filters (--function, --status, ...)", file=err)
        return 2
    try:
        where = _filter(args, settings, transport, time.time())
    except ValueError as exc:
        print(f"{command}: {exc}", file=err)
        return 2
    flow = _bulk.start_flow(settings, args.action, where, args.idempotency_key)
    info, created = effects.drive_sync(flow, transport.perform)
    if not created and not args.json:
        out.write(f"the idempotency key matched bulk action {info.bulk_id}\n")
    if not args.no_wait:
        info = asyncio.run(_follow(settings, transport, info, _progress.Progress(out)))
    if args.json:
        out.write(json.dumps(_json(info), indent=2) + "\n")
    else:
        out.write(summary(info) + "\n")
    return EXIT_STOPPED if info.done and info.status != "completed" else 0


def _replay_one(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
) -> int:
    from_step = getattr(args, "from_step", None)
    new = effects.drive_sync(_runs.replay_flow(settings, args.run_id, from_step), transport.perform)
    if args.json:
        out.write(json.dumps({"run_id": new, "replay_of": args.run_id, "from_step": from_step}))
        out.write("\n")
    else:
        out.write(f"{new}\n")
    return 0


def _filter(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    now: float,
) -> dict[str, Any]:
    function = args.function
    if function:
        function = effects.drive_sync(
            lookups.function_id_flow(settings, function), transport.perform
        )
    found = {
        "function_id": function,
        "status": [s.value for s in args.status or ()],
        "since": moment(args.since, now),
        "until": moment(args.until, now),
        "event": args.event,
        "if": args.if_exp,
        "attributes": getattr(args, "attr", None),
    }
    return {k: v for k, v in found.items() if v not in (None, [], {})}


def moment(text: str | None, now: float) -> str | float | None:
    """A time option: a duration (``2h``: that long before ``now``) or as given (pure)."""
    if not text:
        return None
    try:
        return now - durations.parse_duration(text).total_seconds()
    except ValueError:
        return text  # an RFC 3339 time or unix seconds: the engine reads and checks it


async def _follow(
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    info: _bulk.BulkInfo,
    progress: _progress.Progress,
) -> _bulk.BulkInfo:
    """Look at the action until it ends, drawing its counts meanwhile."""
    latest = [info]

    def look() -> _bulk.BulkInfo:
        return effects.drive_sync(_bulk.get_flow(settings, info.bulk_id), transport.perform)

    async def poll() -> None:
        while not latest[-1].done:
            await asyncio.sleep(_bulk.POLL_SECONDS)
            latest.append(await asyncio.to_thread(look))

    task = asyncio.create_task(poll())
    label = f"Bulk {info.action} {info.bulk_id}"
    await progress.until(label, task.done, detail=lambda: counts(latest[-1]))
    await task  # an error reading the progress surfaces here
    return latest[-1]


def counts(info: _bulk.BulkInfo) -> str:
    """``matched 120 · cancelled 118 · skipped 2`` (pure)."""
    verb = "cancelled" if info.action == "cancel" else "replayed"
    return f"matched {info.matched} · {verb} {info.applied} · skipped {info.skipped}"


def summary(info: _bulk.BulkInfo) -> str:
    """The line left once an action is followed (or asked for, with ``--no-wait``)."""
    return f"bulk {info.action} {info.bulk_id} {info.status}: {counts(info)}"


def _json(info: _bulk.BulkInfo) -> dict[str, Any]:
    return {
        "bulk_id": info.bulk_id,
        "action": info.action,
        "status": info.status,
        "filter": dict(info.filter),
        "matched": info.matched,
        "applied": info.applied,
        "skipped": info.skipped,
    }


class AttributeArg(argparse.Action):
    """``--attr name=value`` (repeatable) into a dict."""

    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        name, sep, text = str(value).partition("=")
        if not sep or not name:
            parser.error(f"--attr: want NAME=VALUE, got {value!r}")
        found = dict(getattr(namespace, self.dest, None) or {})
        found[name] = text
        setattr(namespace, self.dest, found)
