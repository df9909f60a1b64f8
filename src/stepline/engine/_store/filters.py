"""The list filters of the REST API as SQL: one ``SELECT`` with its arguments. Pure."""

from __future__ import annotations

from typing import Any

from stepline.engine._store import EventFilter, RunFilter
from stepline.engine._store.live import EXTERNAL_ONLY, INTERNAL_PATTERNS
from stepline.engine._store.rows import EVENT_COLUMNS, RUN_COLUMNS


def runs_query(where: RunFilter) -> tuple[str, list[Any]]:
    """The newest runs first, from ``where.cursor`` on, that match every filter set."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.function_id is not None:
        clauses.append("function_id = ?")
        args.append(where.function_id)
    if where.status:
        clauses.append(f"status IN ({','.join('?' * len(where.status))})")
        args.extend(s.value for s in where.status)
    if where.since is not None:
        clauses.append("created_at >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append("created_at < ?")
        args.append(where.until)
    if where.version is not None:
        clauses.append("app_version = ?")
        args.append(where.version)
    if where.event_id is not None:
        clauses.append(
            "run_id IN (SELECT l.run_id FROM event_runs l JOIN events e "
            "ON e.internal_id = l.event_id WHERE e.internal_id = ? OR e.id = ?)"
        )
        args.extend((where.event_id, where.event_id))
    for name, value in sorted(where.attributes.items()):  # every one must match
        clauses.append("run_id IN (SELECT run_id FROM run_attributes WHERE name = ? AND value = ?)")
        args.extend((name, value))
    if where.run_id_prefix is not None:  # a range of the primary key (ids are 26 long)
        clauses.append("run_id >= ? AND run_id <= ?")
        args.extend((where.run_id_prefix, where.run_id_prefix.ljust(26, "Z")))
    if where.parent_run_id is not None:
        clauses.append("parent_run_id = ?")
        args.append(where.parent_run_id)
    if where.condition is not None:  # a run query's, parameters only
        clauses.append(where.condition)
        args.extend(where.condition_args)
    if where.cursor is not None:
        clauses.append("run_id < ?")
        args.append(where.cursor)
    return _page(f"SELECT {RUN_COLUMNS} FROM runs", clauses, args, "run_id", where.limit)


def events_query(where: EventFilter) -> tuple[str, list[Any]]:
    """The newest events first, from ``where.cursor`` on, that match every filter set."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.name is not None:
        clauses.append("name = ?")
        args.append(where.name)
    if where.since is not None:
        clauses.append("received_at >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append("received_at < ?")
        args.append(where.until)
    if not where.internal:
        clauses.append(EXTERNAL_ONLY)
        args.extend(INTERNAL_PATTERNS)
    if where.cursor is not None:
        clauses.append("internal_id < ?")
        args.append(where.cursor)
    return _page(f"SELECT {EVENT_COLUMNS} FROM events", clauses, args, "internal_id", where.limit)


def _page(
    select: str, clauses: list[str], args: list[Any], order: str, limit: int
) -> tuple[str, list[Any]]:
    sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "")
    return f"{sql} ORDER BY {order} DESC LIMIT ?", [*args, limit]
