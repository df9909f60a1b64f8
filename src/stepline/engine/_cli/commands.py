"""``stepline dev`` / ``stepline start``: run the engine behind uvicorn.

Settings are resolved once (``_config.resolve``) from the arguments and the
environment; everything below works from the frozen result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from stepline import _extras, _logs, _loops
from stepline._identity import VERSION
from stepline.engine import _backoff
from stepline.engine._apps import sync as _appsync
from stepline.engine._apps.sync import SyncResult
from stepline.engine._cli import db as _db
from stepline.engine._cli import gateway_port as _gateway_port
from stepline.engine._cli import limits as _limits
from stepline.engine._cli import mcp_server as _mcp
from stepline.engine._cli import ports as _ports
from stepline.engine._cli import progress as _progress
from stepline.engine._cli import relay as _relay
from stepline.engine._cli import runs
from stepline.engine._config import (
    DEFAULT_DB,
    DEFAULT_PORT,
    EngineConfigError,
    EngineSettings,
    Mode,
    resolve,
)
from stepline.engine._engine import Engine
from stepline.engine._store import dsn, store_for
from stepline.engine._store.schema_version import SchemaTooNewError

if TYPE_CHECKING:
    import uvicorn

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    """Run the ``stepline`` command line.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        The process exit code: 0 on a clean stop, 2 for bad arguments or settings,
        uvicorn's code (non-zero) if the server could not start.
    """
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["connect"]:  # a worker, not the engine: stepline.connect's own flags
        from stepline._connect import cli as _connect_cli

        return _connect_cli.main(given[1:], prog="stepline connect")
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"stepline {VERSION}")
        return 0
    if args.command == "migrate":
        try:
            settings = resolve(database_url=args.db)
        except EngineConfigError as exc:  # e.g. a libpq keyword string: one line, no secret
            print(f"stepline migrate: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        # migrations need a session: Postgres itself, when the engine's URL is a pooler's
        url = args.db or settings.database_direct_url or settings.database_url
        return _migrate(url, settings.db_schema)
    if args.command in runs.COMMANDS:
        return runs.main(args)
    if args.command == _db.COMMAND:
        return _db.main(args)
    if args.command == _relay.COMMAND:
        return _relay.main(args)
    if args.command == _mcp.COMMAND:
        return _mcp.main(args)
    mode: Mode = "start" if args.command == "start" else "dev"
    missing = _extras.problem("the engine", "engine", _extras.SERVER)
    if missing is not None:  # before anything else: one line, no traceback
        print(f"stepline {mode}: {missing}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        settings = resolve(
            mode=mode,
            host=args.host,
            port=args.port,
            database_url=args.db,
            signing_key=args.signing_key,
            signing_key_fallback=args.signing_key_fallback,
            event_keys=args.event_key or (),
            app_urls=args.sdk_url or (),
            allow_public_bind=args.allow_public,
            # 1.0 is the real retry schedule; smaller values make dev retries fast
            retry_scale=1.0 if args.retry_scale is None else args.retry_scale,
            **_backoff_choice(args),
            migrate=not args.no_migrate,
            **({} if args.db_pool_size is None else {"db_pool_size": args.db_pool_size}),
            **_postgres_connections(args),
            **({} if args.shutdown_grace is None else {"shutdown_grace": args.shutdown_grace}),
            **({} if args.drain_delay is None else {"drain_delay": args.drain_delay}),
            **(
                {}
                if args.sqlite_synchronous is None
                else {"sqlite_synchronous": args.sqlite_synchronous.upper()}
            ),
            **_observability(args),
            **_limits.chosen(args),
            **_polling(args),
            **_relay.engine_settings(args),
        )
    except EngineConfigError as exc:
        print(f"stepline {mode}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        gateway = _gateway_port.chosen(mode, settings.port, args.connect_gateway_port, os.environ)
    except ValueError as exc:
        print(f"stepline {mode}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _logs.configure(json_lines=settings.log_format == "json", level=args.log_level.upper())
    progress = _progress.Progress(sys.stdout)
    problem = asyncio.run(progress.track("Opening the database", _check_database(settings)))
    if problem is not None:
        problem = dsn.scrub(problem, settings.database_url)
        if settings.database_direct_url:  # a secret of its own, in its own errors
            problem = dsn.scrub(problem, settings.database_direct_url)
        print(f"stepline {mode}: {_redact(settings.database_url)}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        engine = Engine(settings)
    except EngineConfigError as exc:  # --otel without OpenTelemetry installed
        print(f"stepline {mode}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _loops.run(_serve(engine, progress, gateway))  # on uvloop when installed
    except KeyboardInterrupt:  # a Ctrl-C before the server handles signals
        return 0


async def _check_database(settings: EngineSettings) -> str | None:
    """Open the database once before serving (migrating unless told not to).

    Returns:
        Why the engine cannot use it, or None.
    """
    try:
        store = store_for(settings)  # psycopg missing for a postgres:// URL: one line too
    except EngineConfigError as exc:
        return str(exc)
    try:
        await store.open()
    except Exception as exc:  # unreachable, bad credentials, schema too old or too new: one line
        return str(exc).strip() or type(exc).__name__
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    return None


def _migrate(url: str, schema: str | None = None) -> int:
    """``stepline migrate``: bring the database schema up to date, then exit."""
    try:
        store = store_for(EngineSettings(database_url=url, db_schema=schema))
    except EngineConfigError as exc:  # psycopg missing for a postgres:// URL
        print(f"stepline migrate: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def run() -> tuple[int, int]:
        try:
            return await store.migrate()
        finally:
            await store.close()

    try:
        before, after = asyncio.run(run())
    except SchemaTooNewError as exc:  # never claims to go backwards: the config exit
        print(f"stepline migrate: {_redact(url)}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # a bad URL or an unreachable database: say so, exit 1
        print(f"stepline migrate: {_redact(url)}: {dsn.scrub(str(exc), url)}", file=sys.stderr)
        return 1
    state = "already up to date" if before == after else f"migrated from version {before}"
    print(f"stepline migrate: {_redact(url)} at schema version {after} ({state})")
    return 0


def _redact(url: str) -> str:
    """The URL without its passwords (user info, ``?password=``, ``password=...``)."""
    return dsn.redact(url)


async def _serve(
    engine: Engine, progress: _progress.Progress, gateway: _gateway_port.Choice | None = None
) -> int:
    """Serve until uvicorn stops; print the banner once the socket listens (``gateway``: a
    second port for the Connect gateway, ``gateway_port``)."""
    import uvicorn  # only serving needs it: `stepline version` and --help work without

    from stepline.engine._cli import stopping as _stopping
    from stepline.engine._connect import routes as _connect_routes
    from stepline.engine._http import draining as _draining
    from stepline.engine._http.api import build_app

    stream = sys.stdout
    settings = engine.settings
    drain = _draining.Drain()
    app = build_app(engine, drain=drain)
    # open streams (SSE) hold the stop no longer than calls in flight may
    grace = max(1, math.ceil(settings.shutdown_grace))  # uvicorn logs an error at 0
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=grace,
        ws=_websocket_protocol(),
    )
    aio = asyncio.get_running_loop()

    def halt() -> None:  # a second signal: cut the grace short
        aio.call_soon_threadsafe(engine.worker.halt.set)

    server = _stopping.Server(
        config,
        grace=settings.shutdown_grace,
        halt=halt,
        closing=_stopping.gateway_closing(engine),
        drain=drain,
        drain_delay=settings.drain_delay,
    )
    settled: list[SyncResult] = []
    bannered = False  # results that settle earlier are printed under the banner

    def synced(result: SyncResult) -> None:
        settled.append(result)
        if bannered:
            progress.line(app_lines([result]))

    # -u apps sync in the background (they call /fn/register back, so the socket had to
    # be open first); each is reported as it settles, without holding up the server
    engine.on_sync = synced
    # without a WebSocket package no socket could be served there: no port is opened, and
    # the banner says what to install instead
    no_connect = _connect_routes.websocket_server_missing()
    extra = _gateway_port.bind(settings.host, gateway) if gateway and not no_connect else None
    serving = asyncio.create_task(_run(server, extra))
    starting = "Starting the engine"
    await progress.until(starting, lambda: server.started or serving.done(), keep=False)
    if not server.started:  # uvicorn logged why; a port in use also gets the --port fix
        _ports.explain(settings.mode, settings.host, settings.port)
        return await serving or 1
    gateway_at = int(extra.getsockname()[1]) if extra is not None else None
    _print(stream, banner(engine, gateway_port=gateway_at, connect_missing=no_connect))
    bannered = True
    if settled:
        _print(stream, app_lines(settled))
    syncing: asyncio.Task[list[SyncResult]] = app.state.sync_task
    total = len(settings.app_urls)
    if total:
        await progress.until(
            "Syncing apps",
            lambda: syncing.done() or serving.done(),
            detail=lambda: f"{len(settled)}/{total}",
            keep=False,  # the line below says how it went: never "synced" after a failure
        )
        _print(stream, sync_summary(settled, settings.mode == "dev"))
    if settings.mode != "dev" or serving.done():
        return await serving
    # dev mode: retry failed syncs quietly and poll the apps for changes (Inngest's dev
    # server does the same); reported below the banner as each app changes state
    poller = _appsync.poller(engine, report=lambda r: progress.line(app_lines([r])))
    for result in settled:
        poller.settled(result)
    polling = asyncio.create_task(poller.run(), name="stepline-poll")
    try:
        return await serving
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)


def sync_summary(results: Sequence[SyncResult], retrying: bool) -> str:
    """The line after the ``-u`` syncs: how many are synced, never "synced" if one failed.

    Args:
        results: what syncing each app did.
        retrying: the dev engine keeps retrying the failed ones.

    Returns:
        One line.
    """
    failed = sum(1 for r in results if not r.ok)
    if not failed:
        return f"  ✓ {len(results)} app(s) synced"
    then = "; retrying in the background" if retrying else ""
    return f"  ✗ {failed} of {len(results)} app(s) failed to sync{then}"


def _websocket_protocol() -> Any:
    """The WebSocket protocol to serve with: small messages until a socket authenticates
    (``websocket.Protocol``), or uvicorn's choice without the ``websockets`` package."""
    try:
        from stepline.engine._cli import websocket as _websocket
    except ImportError:  # no websockets package: uvicorn falls back (or serves no sockets)
        return "auto"
    return _websocket.Protocol


async def _run(server: uvicorn.Server, extra: socket.socket | None = None) -> int:
    try:
        # uvicorn binds the engine's port itself (and exits, having said why, if taken)
        sockets = None
        if extra is not None:
            sockets = [_gateway_port.no_delay(server.config.bind_socket()), extra]
        await server.serve(sockets)
    except SystemExit as exc:  # uvicorn exits on a bind failure, having logged why
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def banner(
    engine: Engine, *, gateway_port: int | None = None, connect_missing: str | None = None
) -> str:
    """Where everything is, printed once the server listens: every port it listens on.

    Args:
        engine: the engine being served.
        gateway_port: the Connect gateway's own port (``gateway_port``), if it listens
            on one.
        connect_missing: why Connect cannot be served (the extra to install), if so.

    Returns:
        The banner text (never containing a key).
    """
    settings = engine.settings
    host = _host(settings.host)
    base = f"http://{host}:{settings.port}"
    if connect_missing is not None:
        connect = [f"  Connect    off: {connect_missing}"]
    else:
        connect = [f"  Connect    ws://{host}:{settings.port}/v0/connect/gateway (workers)"]
        if gateway_port is not None:
            connect.append(
                f"  Gateway    ws://{host}:{gateway_port}/v0/connect (its own port, as "
                "Inngest's dev server; --connect-gateway-port PORT|auto|0)"
            )
    lines = [
        f"Stepline engine {VERSION} ({settings.mode} mode)",
        f"  Engine     {base}",
        f"  Event API  {base}/e/<event key>",
        f"  REST API   {base}/v1",
        f"  Dashboard  {base}/",
        *connect,
        f"  Database   {_redact(settings.database_url)}{_durability(settings)}",
    ]
    if settings.metrics:
        lines.append(f"  Metrics    {base}/metrics")
    if settings.mode == "dev" and not settings.event_keys:
        lines.append("  Auth       none (dev mode: any event key, no signing key required)")
    if settings.app_urls:
        lines.append(f"  Apps       syncing {len(settings.app_urls)} app(s)...")
    return "\n".join(lines)


def _durability(settings: EngineSettings) -> str:
    """What a commit survives, for a SQLite database."""
    if settings.database_url.startswith(("postgres://", "postgresql://")):
        return ""
    if settings.sqlite_synchronous == "FULL":
        return " (SQLite, synchronous=FULL: commits survive power loss)"
    return " (SQLite, synchronous=NORMAL: commits survive a crash of this process)"


def app_lines(results: Sequence[SyncResult]) -> str:
    """One line per ``-u`` app: synced, or the reason it is not.

    Args:
        results: what syncing each app did.

    Returns:
        The lines, joined.
    """
    return "\n".join(
        f"  ✓ {r.url} synced" if r.ok else f"  ✗ {r.url} error: {r.error}" for r in results
    )


def _backoff_choice(args: argparse.Namespace) -> dict[str, Any]:
    """``retry_backoff`` when ``--retry-backoff`` was given (``dev`` only), else nothing:
    the environment's ``STEPLINE_RETRY_BACKOFF`` or the default then decide."""
    chosen = getattr(args, "retry_backoff", None)
    return {} if chosen is None else {"retry_backoff": chosen}


def _scale(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"want a number >= 0, got {text!r}")
    return value


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _print(stream: TextIO, text: str) -> None:
    # flush: under a supervisor (or a test) stdout is a pipe and would sit in a buffer
    print(text, file=stream, flush=True)


_DB_HELP = (
    f"a SQLite file (default {DEFAULT_DB}) or postgresql://user@host/db, which several "
    "engines can share (env STEPLINE_DATABASE_URL)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepline", description="Run the Stepline durable-functions engine."
    )
    parser.add_argument("--version", action="version", version=f"stepline {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    dev = commands.add_parser("dev", help="a local engine: open API, SQLite, fast to start")
    start = commands.add_parser("start", help="a production engine: signing and event keys")
    commands.add_parser("version", help="print the version")
    commands.add_parser("connect", help="serve module:client's functions over Connect")
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--db", metavar="URL", help=_DB_HELP)
    for sub in (dev, start):
        _gateway_port.add_argument(sub)
        sub.add_argument("--host", help="interface to bind (default 127.0.0.1)")
        sub.add_argument("--port", type=int, help=f"port to bind (default {DEFAULT_PORT})")
        sub.add_argument(
            "-u",
            "--sdk-url",
            action="append",
            metavar="URL",
            help="an app's serve URL to sync at start (repeatable)",
        )
        sub.add_argument("--db", metavar="URL", help=_DB_HELP)
        sub.add_argument(
            "--db-pool-size",
            type=int,
            metavar="N",
            help="Postgres connections this process keeps (default 10; STEPLINE_DB_POOL_SIZE)",
        )
        sub.add_argument(
            "--db-direct",
            metavar="URL",
            help="Postgres itself when --db is a connection pooler's: LISTEN and migrations "
            "go there (STEPLINE_DATABASE_DIRECT_URL)",
        )
        sub.add_argument(
            "--db-pooler",
            choices=("none", "session", "transaction"),
            help="the pool mode of a pooler (PgBouncer) in front of --db (default none; "
            "STEPLINE_DB_POOLER)",
        )
        sub.add_argument(
            "--db-schema",
            metavar="NAME",
            help="the schema of the engine's tables, set per connection or, behind a "
            "transaction pooler, per transaction (STEPLINE_DB_SCHEMA)",
        )
        sub.add_argument(
            "--sqlite-synchronous",
            choices=("normal", "full", "NORMAL", "FULL"),
            metavar="normal|full",
            help="SQLite durability: normal (default) survives a crash of the engine; full "
            "also survives power loss, at an fsync per commit (STEPLINE_SQLITE_SYNCHRONOUS)",
        )
        sub.add_argument(
            "--no-migrate",
            action="store_true",
            help="do not upgrade the database schema at start (run `stepline migrate` instead)",
        )
        sub.add_argument(
            "--allow-public",
            action="store_true",
            help="let `dev` bind to a non-loopback interface and answer any Host name "
            "(anyone reaching it can use it)",
        )
        sub.add_argument("--retry-scale", type=_scale, help=argparse.SUPPRESS)
        sub.add_argument(
            "--shutdown-grace",
            type=_scale,
            metavar="SECONDS",
            help="on SIGTERM/SIGINT, how long calls in flight may finish before they are handed "
            "back (default 30; a second signal stops at once; env STEPLINE_SHUTDOWN_GRACE)",
        )
        sub.add_argument(
            "--drain-delay",
            type=_scale,
            metavar="SECONDS",
            help="on SIGTERM/SIGINT, how long /ready answers 503 while requests are still "
            "served, before the listener closes, so a load balancer moves traffic away; ends "
            "sooner after a second without requests (default 10 for start, 0 for dev; taken "
            "out of the shutdown grace; env STEPLINE_DRAIN_DELAY)",
        )
        sub.add_argument("--signing-key", help="key used to sign calls to apps")
        sub.add_argument("--signing-key-fallback", help=argparse.SUPPRESS)
        sub.add_argument(
            "--event-key",
            action="append",
            metavar="KEY",
            help="a key accepted by POST /e/{key} (repeatable; required by `start`)",
        )
        _observability_arguments(sub)
        _limits.add_arguments(sub)
        _relay.add_engine_argument(sub)
    dev.add_argument(
        "--retry-backoff",
        choices=_backoff.NAMES,
        help="the delays before retries: inngest (default: 15 s, 30 s, 1 m... plus up to "
        "30 s, as on Inngest) or short (1 s, 2 s, 4 s, 8 s... plus up to 1 s, for local "
        "development; env STEPLINE_RETRY_BACKOFF)",
    )
    dev.add_argument(
        "--poll-interval",
        type=_scale,
        metavar="SECONDS",
        help="how often to check known apps for changes and sync them again (default 5; "
        "env STEPLINE_POLL_INTERVAL)",
    )
    dev.add_argument(
        "--no-poll",
        action="store_true",
        help="do not poll apps (a failed -u sync is still retried until it succeeds; "
        "env STEPLINE_NO_POLL=1)",
    )
    runs.add_parsers(commands)
    _db.add_parser(commands, _DB_HELP)
    _relay.add_parser(commands)
    _mcp.add_parser(commands)
    return parser


def _observability_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text or JSON, with run, function, step and attempt "
        "(env STEPLINE_LOG_FORMAT)",
    )
    sub.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="the lowest level logged (default warning)",
    )
    sub.add_argument(
        "--otel",
        action="store_true",
        help="write OpenTelemetry spans with the global tracer provider, e.g. under "
        "opentelemetry-instrument (needs stepline[otel]; env STEPLINE_TRACING=1)",
    )
    sub.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not count anything for GET /metrics (env STEPLINE_METRICS=0)",
    )


def _postgres_connections(args: argparse.Namespace) -> dict[str, Any]:
    """The Postgres connection settings the flags override (a pooler's, a schema)."""
    flags = {"database_direct_url": args.db_direct, "db_pooler": args.db_pooler}
    flags["db_schema"] = args.db_schema
    return {name: value for name, value in flags.items() if value is not None}


def _polling(args: argparse.Namespace) -> dict[str, Any]:
    """The app polling the ``dev`` flags override (``start`` does not poll)."""
    if getattr(args, "no_poll", False):
        return {"app_poll_interval": 0.0}
    interval = getattr(args, "poll_interval", None)
    return {} if interval is None else {"app_poll_interval": interval}


def _observability(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the observability flags override (the environment decides the rest)."""
    chosen: dict[str, Any] = {}
    if args.log_format is not None:
        chosen["log_format"] = args.log_format
    if args.otel:
        chosen["tracing"] = True
    if args.no_metrics:
        chosen["metrics"] = False
    return chosen


__all__ = ["app_lines", "banner", "main"]
