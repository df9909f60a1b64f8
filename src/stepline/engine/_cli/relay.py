"""``stepline relay --db URL``: move an app's outbox rows to the engine, exactly once.

The app writes ``stepline_outbox`` rows inside its own transactions
(``stepline.outbox``, ``stepline.django``, ``stepline.sqlalchemy``); this process delivers
the committed ones (``stepline.outbox._relay``). Run it next to the app (several are safe:
one delivers, the others stand by); on Postgres it wakes at each writer's commit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from stepline import _errors, _settings
from stepline._logs import configure

COMMAND = "relay"
EXIT_CONFIG = 2


def add_parser(commands: Any) -> None:
    """Add ``relay`` to the CLI's sub-command parsers."""
    relay = commands.add_parser(
        COMMAND, help="deliver an app's outbox (stepline_outbox) to the engine"
    )
    relay.add_argument(
        "--db",
        metavar="URL",
        help="the APP's database holding stepline_outbox: postgresql://..., mysql://... "
        "(MariaDB too), sqlite:///path or a SQLite path (env STEPLINE_OUTBOX_DATABASE_URL)",
    )
    relay.add_argument(
        "--engine",
        metavar="URL",
        help="the engine's base URL (env STEPLINE_ENGINE_URL, else the SDK's: "
        "STEPLINE_API_BASE_URL, STEPLINE_BASE_URL or STEPLINE_DEV=URL; default "
        "http://127.0.0.1:8288)",
    )
    relay.add_argument(
        "--event-key",
        metavar="KEY",
        help="the event key events are sent with (env STEPLINE_EVENT_KEY; any in dev mode)",
    )
    relay.add_argument(
        "--signing-key",
        metavar="KEY",
        help="the signing key that authorizes starts on a production engine "
        "(env STEPLINE_SIGNING_KEY)",
    )
    relay.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve GET /metrics (stepline_outbox_backlog, ..._delivered_total) on 127.0.0.1",
    )
    relay.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="how often an idle relay looks at the outbox (default 1; Postgres also wakes "
        "it at each commit)",
    )
    relay.add_argument("--batch-size", type=int, metavar="N", help="rows per batch (100)")
    relay.add_argument(
        "--log-level", default="warning", choices=("debug", "info", "warning", "error")
    )


def add_engine_argument(sub: argparse.ArgumentParser) -> None:
    """``--relay-outbox [URL]`` for ``dev`` and ``start``: the engine relays an outbox itself."""
    sub.add_argument(
        "--relay-outbox",
        nargs="?",
        const="self",
        metavar="URL",
        help="relay a stepline_outbox table in this engine, with no relay process: the "
        "engine's own database (no URL: an app sharing the engine's Postgres, woken by "
        "NOTIFY) or the app's database URL (env STEPLINE_RELAY_OUTBOX)",
    )


def engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``--relay-outbox`` overrides."""
    chosen = getattr(args, "relay_outbox", None)
    return {} if chosen is None else {"relay_outbox": chosen}


def main(args: argparse.Namespace) -> int:
    """Run ``stepline relay``; returns the exit code (0 stopped, 2 misuse)."""
    from stepline.outbox import _relay, _relay_db, _relay_deliver, _relay_run

    env = os.environ
    url = args.db or env.get("STEPLINE_OUTBOX_DATABASE_URL")
    if not url:
        print("stepline relay: --db URL is required (the app's database)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        engine = _engine_settings(args, env)
    except _errors.SteplineError as exc:
        print(f"stepline relay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        db = _relay_db.open_url(url)
    except ValueError as exc:
        print(f"stepline relay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # unreachable, bad credentials: one line, no traceback
        print(f"stepline relay: cannot open the database: {exc}", file=sys.stderr)
        return 1
    configure(json_lines=False, level=args.log_level.upper())
    options: dict[str, Any] = {
        "pause_after_delivery": env.get("STEPLINE_RELAY_TEST_PAUSE_AFTER_DELIVERY") or None
    }
    if args.poll_interval is not None:
        options["poll_interval"] = args.poll_interval
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    deliverer = _relay_deliver.HttpDeliverer(
        engine.api_base_url,
        event_key=engine.event_key or "relay",
        signing_key=engine.signing_key,
    )
    return _relay_run.run_forever(
        db,
        deliverer,
        _relay.RelaySettings(**options),
        listen=_relay.postgres_listener(url) if db.dialect == "postgresql" else None,
        metrics_port=args.metrics_port,
    )


def _engine_settings(args: argparse.Namespace, env: Mapping[str, str]) -> _settings.Settings:
    """The engine and keys as the SDK resolves them; ``--engine`` or ``STEPLINE_ENGINE_URL`` win.

    Raises:
        SteplineError: a malformed URL or key, or ``STEPLINE_DEV=0`` with no engine URL.
    """
    url = args.engine or env.get("STEPLINE_ENGINE_URL") or None
    settings = _settings.resolve(
        app_id="stepline-relay",
        environ=env,
        signing_key=args.signing_key,
        event_key=args.event_key,
        api_base_url=url,
        event_api_base_url=url,
        unset_mode="dev",  # next to the app, as the CLI: the local engine by default
    )
    settings.require_engine("", option="--engine")
    return settings
