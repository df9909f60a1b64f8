"""``stepline runs signal RUN_ID NAME [--data JSON]``: complete a run's wait for a signal.

Sends ``POST /v1/runs/{run_id}/signals/{name}`` through the client's own flow, so the
answers are the client's: 0 when the waiting step got the signal; 1 when nothing in the
run waits for it (an unknown run, a name it does not wait for, or not yet); 3
(``EXIT_ALREADY``) when its wait was already completed (a signal completes a wait once);
2 for data that is not JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from stepline import _settings
from stepline._api import signals as _signals
from stepline._transport import effects, performers

#: exit status when the wait was already completed (or timed out)
EXIT_ALREADY = 3


def add_parser(actions: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``signal`` to ``stepline runs``'s actions."""
    signal = actions.add_parser(
        "signal",
        help="send a signal to a run waiting for it (step.wait_for_signal)",
        epilog=f"exit status: 0 delivered; 1 nothing waits for it; {EXIT_ALREADY} its wait "
        "was already completed; 2 bad data",
    )
    signal.add_argument("run_id")
    signal.add_argument("name", help="the signal's name, as the step waits for it")
    signal.add_argument("-d", "--data", default="null", help="the signal's data, as JSON")
    common(signal)


def main(
    args: argparse.Namespace,
    settings: _settings.Settings,
    transport: performers.SyncTransport,
    out: TextIO,
    err: TextIO,
) -> int:
    """Send the signal; the exit status."""
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        print(f"stepline runs signal: --data is not JSON: {exc}", file=err)
        return 2
    flow = _signals.signal_flow(settings, args.run_id, args.name, data)
    try:
        run_id = effects.drive_sync(flow, transport.perform)
    except _signals.SignalAlreadyReceivedError as exc:
        print(f"stepline runs signal: {exc}", file=err)
        return EXIT_ALREADY
    if args.json:
        print(json.dumps({"run_id": run_id, "signal": args.name}), file=out)
    else:
        print(f"signal {args.name!r} delivered to run {run_id}", file=out)
    return 0
