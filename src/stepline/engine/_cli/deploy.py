"""``stepline deploy check``: will this deploy break a run in flight? And ``runs export``.

``deploy check TARGET`` replays every live run of the target's apps on the engine against
the new code (``stepline._replay.deploy_check``) and prints a summary for a CI log (or the
report as JSON); the exit status says whether to ship. ``runs export RUN_ID`` writes a
run's journal, the document ``TestEnv.replay`` turns into a regression test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from stepline import _settings
from stepline._api import journals
from stepline._errors import ConfigError, SteplineError
from stepline._replay import deploy_check, wire
from stepline._replay.verdict import CheckReport
from stepline._transport import effects, performers

#: The top-level command this module serves.
COMMAND = "deploy"
#: Some run would diverge from its record, or fail, on the new code.
EXIT_DIVERGED = 1
#: The target could not be loaded, or an argument is wrong.
EXIT_USAGE = 2
#: The check could not run: the engine or the app was unreachable or refused it.
EXIT_UNCHECKED = 3


def add_parser(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``deploy check`` to the CLI's sub-command parsers."""
    deploy = commands.add_parser("deploy", help="check a deploy against the runs in flight")
    actions = deploy.add_subparsers(dest="action", required=True, metavar="action")
    check = actions.add_parser(
        "check",
        help="replay every live run against the new code; fail if one would diverge",
        description="Replay every live run of the target's apps against the new code: each "
        "recorded step is answered from the run's record, so no step's code runs and nothing "
        "is sent. Reports the runs that would diverge (a recorded step no longer reached, "
        "steps reordered, a new step before recorded ones) and what to change.",
        epilog=f"exit status: 0 no run would diverge; {EXIT_DIVERGED} some run would diverge "
        f"or fail; {EXIT_USAGE} bad arguments or target; {EXIT_UNCHECKED} the engine or the "
        "app could not be reached",
    )
    check.add_argument(
        "target",
        help="the new code: module:client (imported here), or the serve URL of the new app "
        "started in CI (http://127.0.0.1:8000/api/inngest)",
    )
    check.add_argument(
        "-f",
        "--function",
        action="append",
        default=[],
        help="only this function's runs: its full id (repeatable)",
    )
    check.add_argument(
        "--ended",
        type=int,
        default=0,
        metavar="N",
        help="also replay the newest N completed or failed runs of each function",
    )
    check.add_argument("--app", help="for a serve URL: the app whose runs to check")
    check.add_argument(
        "--strict", action="store_true", help="fail when a replay is inconclusive, too"
    )
    check.add_argument(
        "--upload",
        action="store_true",
        help="send the report to the engine: its apps page shows the last check",
    )
    common(check)


def main(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run ``stepline deploy check``; see the exit statuses above."""
    if args.ended < 0:
        print("stepline deploy check: --ended must be 0 or more", file=err)
        return EXIT_USAGE
    try:
        target: deploy_check.LocalTarget | deploy_check.WireTarget
        if args.target.startswith(("http://", "https://")):
            target = deploy_check.WireTarget(args.target, args.app, settings.signing_key)
        else:
            sys.path.insert(0, "")  # the target imports from the working directory, as python -m
            target = deploy_check.load_target(args.target)
        report = deploy_check.check(
            settings,
            target,
            transport.perform,
            functions=args.function,
            ended=args.ended,
            strict=args.strict,
        )
    except ConfigError as exc:
        print(f"stepline deploy check: {exc}", file=err)
        return EXIT_USAGE
    except (wire.AppUnreachableError, SteplineError) as exc:
        print(f"stepline deploy check: could not check: {exc}", file=err)
        return EXIT_UNCHECKED
    document = report.to_json()
    if args.json:
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(report.render() + "\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        _github(report, None if args.json else out, err)
    if args.upload:
        try:
            effects.drive_sync(journals.upload_flow(settings, document), transport.perform)
        except SteplineError as exc:
            print(f"stepline deploy check: the report was not uploaded: {exc}", file=err)
    return 0 if report.ok else EXIT_DIVERGED


def _github(report: CheckReport, out: TextIO | None, err: TextIO) -> None:
    """Under GitHub Actions: an annotation per failing run (on the line where the new code
    departs, when known; not with ``--json``, whose output is the report alone), and the
    summary on the job's page (``$GITHUB_STEP_SUMMARY``)."""
    if out is not None:
        out.writelines(line + "\n" for line in report.annotations())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as file:
                file.write(report.markdown())
        except OSError as exc:
            print(f"stepline deploy check: cannot write {summary}: {exc.strerror}", file=err)


def add_export(actions: Any) -> argparse.ArgumentParser:
    """Add ``runs export`` to ``stepline runs``'s actions; returns it for the common options."""
    export: argparse.ArgumentParser = actions.add_parser(
        "export",
        help="write a run's journal (JSON): replay it as a test with TestEnv.replay",
    )
    export.add_argument("run_id")
    export.add_argument(
        "--drop-output",
        action="append",
        default=[],
        metavar="STEP",
        help="leave this step's output out (repeatable); a replay then asks for it",
    )
    export.add_argument(
        "--redact-key",
        action="append",
        default=[],
        metavar="KEY",
        help="mask the value of every KEY in the events, outputs and result (repeatable)",
    )
    export.add_argument("-o", "--output", help="write to this file (default: standard output)")
    return export


def export(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
) -> int:
    """Run ``stepline runs export`` (errors are the caller's to report)."""
    flow = journals.export_flow(
        settings, args.run_id, drop_outputs=args.drop_output, redact_keys=args.redact_key
    )
    journal = effects.drive_sync(flow, transport.perform)
    text = json.dumps(journal.to_json(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        out.write(text)
    return 0
