"""The SQL of the audit log (``tx.audit``, table ``audit_log``): who did what, and how it
ended, one row per action taken or refused.

A part of both stores' transactions (``part``). Entries are written in their own
transaction once the action has answered (``engine._http.audit``) and never changed;
their ids are ULIDs, so id order is time order and a page's cursor is the last id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline.engine._store.part import Part
from stepline.engine._store.rows import insert

_COLUMNS = "entry_id, at, principal, role, credential, via, action, target, outcome, status"


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action, as the audit log keeps it.

    Attributes:
        entry_id: a ULID, in time order.
        at: when it answered (seconds since the epoch).
        principal: who acted (a dashboard user's name, ``signing-key``, ``dev``, or the
            name a signing-key caller asserted).
        role: their role (``viewer``, ``operator``, ``admin``), or ``""`` for none.
        credential: the credential kind they presented.
        via: the credential's own name when ``principal`` was asserted (``signing-key``).
        action: the route (``POST /v1/runs/{run_id}/cancel``) or ``sign-in``/``sign-out``.
        target: what it acted on (``run_id=01J...``), ``""`` for nothing named.
        outcome: ``ok``, ``refused`` (a role too low, a wrong key) or ``failed``.
        status: the HTTP status answered.
    """

    entry_id: str
    at: float
    principal: str
    role: str
    credential: str
    via: str | None
    action: str
    target: str
    outcome: str
    status: int


class AuditSql(Part):
    """``Tx.audit``: the methods over ``audit_log``."""

    __slots__ = ()

    def record(self, entry: AuditEntry) -> None:
        """Store ``entry``."""
        self._x(
            insert("audit_log", _COLUMNS),
            (
                entry.entry_id,
                entry.at,
                entry.principal,
                entry.role,
                entry.credential,
                entry.via,
                entry.action,
                entry.target,
                entry.outcome,
                entry.status,
            ),
        )

    def entries(self, *, before: str | None, principal: str | None, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` entries older than the id ``before``, newest first; of one
        principal when ``principal`` is set."""
        where: list[str] = []
        args: list[object] = []
        if before is not None:
            where.append("entry_id < ?")
            args.append(before)
        if principal is not None:
            where.append("principal = ?")
            args.append(principal)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._x(
            f"SELECT {_COLUMNS} FROM audit_log {clause}ORDER BY entry_id DESC LIMIT ?",
            (*args, limit),
        )
        return [_read(row) for row in rows]


def _read(row: Sequence[object]) -> AuditEntry:
    return AuditEntry(
        entry_id=str(row[0]),
        at=float(row[1]),  # type: ignore[arg-type]
        principal=str(row[2]),
        role=str(row[3]),
        credential=str(row[4]),
        via=None if row[5] is None else str(row[5]),
        action=str(row[6]),
        target=str(row[7]),
        outcome=str(row[8]),
        status=int(row[9]),  # type: ignore[call-overload]
    )
