"""The SQL of bulk actions (``tx.bulk``, table ``bulk_actions``): a filter, its progress,
its status.

A part of both stores' transactions (``part``), for run control. An action's batches read
and write its row with the row locked (``get_bulk(lock=True)``: ``FOR UPDATE`` on
Postgres; SQLite has one writer), so two nodes holding its job at once take turns and the
second starts after the first's ``cursor``: each run is handled once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from stepline._json import dumps, loads
from stepline.engine._model import Run
from stepline.engine._store.part import Part
from stepline.engine._store.rows import RUN_COLUMNS, insert, read_run

BULK_COLUMNS = (
    "bulk_id, action, filter, status, idempotency_key, created_at, updated_at, cursor, "
    "matched, applied, skipped, error"
)
_INSERT = insert("bulk_actions", BULK_COLUMNS, on_conflict="DO NOTHING")


@dataclasses.dataclass(slots=True)
class BulkAction:
    """A bulk cancel or replay and how far it got.

    Attributes:
        action: ``cancel`` or ``replay``.
        filter: what runs it acts on (``_control.bulk.BulkFilter.to_json``).
        status: ``queued``, ``running``, ``completed``, ``cancelled`` or ``failed``.
        cursor: the last run id handled (runs go in ``run_id`` order), None before any.
        matched: runs that matched the filter so far; ``applied`` were acted on,
            ``skipped`` were not (already ended, not replayable).
    """

    bulk_id: str
    action: str
    filter: dict[str, Any]
    status: str
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    cursor: str | None = None
    matched: int = 0
    applied: int = 0
    skipped: int = 0
    error: str | None = None


def _values(a: BulkAction) -> tuple[Any, ...]:
    return (
        a.bulk_id, a.action, dumps(a.filter), a.status, a.idempotency_key, a.created_at,
        a.updated_at, a.cursor, a.matched, a.applied, a.skipped, a.error,
    )  # fmt: skip


def _read(row: Sequence[Any]) -> BulkAction:
    return BulkAction(
        bulk_id=str(row[0]), action=str(row[1]), filter=loads(row[2]), status=str(row[3]),
        idempotency_key=row[4], created_at=float(row[5]), updated_at=float(row[6]),
        cursor=row[7], matched=int(row[8]), applied=int(row[9]), skipped=int(row[10]),
        error=row[11],
    )  # fmt: skip


class BulkSql(Part):
    """``Tx.bulk``: the methods over ``bulk_actions``."""

    __slots__ = ()

    def insert_bulk(self, action: BulkAction) -> bool:
        """Store a new action; False if its ``idempotency_key`` is taken (nothing stored)."""
        return bool(self._x(_INSERT, _values(action)).rowcount == 1)

    def get_bulk(self, bulk_id: str, *, lock: bool = False) -> BulkAction | None:
        """An action; ``lock`` holds its row until the transaction ends (its batches do)."""
        suffix = self._row_lock() if lock else ""
        row = self._x(
            f"SELECT {BULK_COLUMNS} FROM bulk_actions WHERE bulk_id = ?{suffix}", (bulk_id,)
        ).fetchone()
        return None if row is None else _read(row)

    def bulk_by_key(self, key: str) -> BulkAction | None:
        """The action stored with this idempotency key."""
        row = self._x(
            f"SELECT {BULK_COLUMNS} FROM bulk_actions WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return None if row is None else _read(row)

    def update_bulk(self, action: BulkAction) -> None:
        """Write an action's status and progress."""
        self._x(
            "UPDATE bulk_actions SET status = ?, updated_at = ?, cursor = ?, matched = ?, "
            "applied = ?, skipped = ?, error = ? WHERE bulk_id = ?",
            (
                action.status, action.updated_at, action.cursor, action.matched,
                action.applied, action.skipped, action.error, action.bulk_id,
            ),
        )  # fmt: skip

    def list_bulk(self, cursor: str | None, limit: int) -> list[BulkAction]:
        """Actions, newest first, before ``cursor`` (the last id of the previous page)."""
        where, args = ("WHERE bulk_id < ? ", (cursor,)) if cursor else ("", ())
        rows = self._x(
            f"SELECT {BULK_COLUMNS} FROM bulk_actions {where}ORDER BY bulk_id DESC LIMIT ?",
            (*args, limit),
        )
        return [_read(r) for r in rows]

    def bulk_runs(
        self,
        *,
        function_id: str | None,
        statuses: Sequence[str],
        since: float | None,
        until: float,
        after: str | None,
        limit: int,
        attributes: Mapping[str, str] | None = None,
    ) -> list[Run]:
        """Up to ``limit`` runs after run id ``after``, in run id order, created in
        ``[since, until]``, of the function and statuses and with the attributes (when
        given)."""
        clauses: list[str] = ["created_at <= ?"]
        args: list[Any] = [until]
        for clause, value in (
            ("function_id = ?", function_id),
            ("created_at >= ?", since),
            ("run_id > ?", after),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        for name, value in sorted((attributes or {}).items()):
            clauses.append(
                "run_id IN (SELECT run_id FROM run_attributes WHERE name = ? AND value = ?)"
            )
            args.extend((name, value))
        rows = self._x(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(clauses)} ORDER BY run_id LIMIT ?",
            (*args, limit),
        )
        return [read_run(r) for r in rows]
