"""``stepline db vacuum`` and ``stepline db backup PATH``: upkeep an operator runs by hand.

``vacuum`` gives the space retention freed back (SQLite ``VACUUM``; Postgres ``VACUUM
ANALYZE`` of the engine's tables). ``backup`` copies a SQLite database with SQLite's
online backup API while engines keep using it; Postgres has ``pg_dump``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Any

from stepline.engine._config import EngineConfigError, parse_retention, resolve
from stepline.engine._store import dsn
from stepline.engine._store import retention as _retention

COMMAND = "db"
#: every table of the engine's schema (what ``vacuum`` goes through on Postgres)
TABLES = ("apps", "functions", *_retention.TABLES)
#: pages copied per step of the online backup: all, in one read transaction. SQLite starts a
#: backup over when another connection writes between two steps, so copying in steps never
#: finished on a database an engine kept writing to; one snapshot only grows the WAL for
#: the copy's duration (docs/operations.md#backups)
PAGES_PER_STEP = -1


def add_parser(commands: Any, db_help: str) -> None:
    """Add ``db vacuum`` and ``db backup PATH`` to the CLI's sub-command parsers."""
    db = commands.add_parser(COMMAND, help="vacuum or back up the engine's database")
    actions = db.add_subparsers(dest="action", required=True, metavar="action")
    vacuum = actions.add_parser(
        "vacuum", help="give freed space back (SQLite VACUUM, Postgres VACUUM ANALYZE)"
    )
    backup = actions.add_parser("backup", help="copy a SQLite database while engines run")
    backup.add_argument("path", help="the new file to write the copy to")
    for sub in (vacuum, backup):
        sub.add_argument("--db", metavar="URL", help=db_help)


def add_retention_argument(sub: argparse.ArgumentParser) -> None:
    """``--retention DURATION`` for ``dev`` and ``start``."""
    sub.add_argument(
        "--retention",
        type=_retention_seconds,
        metavar="DURATION",
        help="keep ended runs and the events they used this long, e.g. 7d, 12h, 2s; 0 or off "
        "keeps everything (default 7d; env STEPLINE_RETENTION)",
    )


def _retention_seconds(text: str) -> float:
    try:
        return parse_retention(text, "--retention")
    except EngineConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(args: argparse.Namespace) -> int:
    """Run ``stepline db ACTION``; returns the exit code (0 done, 1 failed, 2 misuse)."""
    name = f"stepline db {args.action}"
    try:
        settings = resolve(database_url=args.db)
    except EngineConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    url = settings.database_url
    postgres = url.startswith(("postgres://", "postgresql://"))
    if postgres and args.db is None and settings.database_direct_url:
        # VACUUM and pg_dump want a session of their own: Postgres itself, not a pooler
        url = settings.database_direct_url
    if args.action == "backup" and postgres:
        print(
            f"{name}: {dsn.redact(url)} is a Postgres database: back it up with pg_dump, e.g. "
            f"pg_dump --format=custom --file={args.path} '{dsn.redact(url)}' (add the "
            "password, or set PGPASSWORD)",
            file=sys.stderr,
        )
        return 2
    path = settings.sqlite_path
    if not postgres and (path == ":memory:" or not os.path.isfile(path)):
        print(f"{name}: no SQLite database at {path}; pass --db or STEPLINE_DATABASE_URL")
        return 2
    try:
        if postgres:
            return _vacuum_postgres(name, url, settings.db_schema)
        if args.action == "vacuum":
            return _vacuum_sqlite(name, path)
        return _backup_sqlite(name, path, args.path)
    except Exception as exc:  # locked, unreachable, disk full: one line, no secret
        print(f"{name}: {dsn.redact(url)}: {dsn.scrub(str(exc), url)}", file=sys.stderr)
        return 1


def _size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


def _vacuum_sqlite(name: str, path: str) -> int:
    before = _size(path)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    after = _size(path)
    print(f"{name}: vacuumed {path}: {_mib(before)} -> {_mib(after)}")
    return 0


def _vacuum_postgres(name: str, url: str, schema: str | None) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if schema is not None:  # the engine's tables' (STEPLINE_DB_SCHEMA)
            conn.execute("SELECT set_config('search_path', %s, false)", (schema,))
        present = {
            str(row[0])
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
        done = [table for table in TABLES if table in present]
        for table in done:
            print(f"{name}: VACUUM ANALYZE {table}", flush=True)
            conn.execute(f"VACUUM ANALYZE {table}")
    print(f"{name}: vacuumed and analyzed {len(done)} tables of {dsn.redact(url)}")
    return 0


def _backup_sqlite(name: str, path: str, target: str) -> int:
    if os.path.exists(target):
        print(f"{name}: {target} exists; remove it or choose another path", file=sys.stderr)
        return 2
    if os.path.abspath(target) == os.path.abspath(path):
        print(f"{name}: the copy must go to another file than {path}", file=sys.stderr)
        return 2

    def progress(status: int, remaining: int, total: int) -> None:
        print(f"{name}: {total - remaining}/{total} pages", file=sys.stderr, flush=True)

    source = sqlite3.connect(path, timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy, pages=PAGES_PER_STEP, progress=progress)
    except BaseException:
        copy.close()
        os.remove(target)  # no half copy that looks like a backup
        raise
    finally:
        copy.close()
        source.close()
    print(f"{name}: copied {path} to {target} ({_mib(os.path.getsize(target))})")
    return 0
