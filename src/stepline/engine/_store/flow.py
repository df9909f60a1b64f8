"""The SQL of flow control: rate limits and throttles, singletons, debounce and batch
buckets, and concurrency slots (``tx.flow``, a part of both stores' transactions)."""

from __future__ import annotations

from collections.abc import Sequence

from stepline.engine._store.part import Part, TxSql
from stepline.engine._store.rows import upsert

__all__ = ["FlowSql"]

_UPSERT_LIMIT = upsert("limits", "scope, key, value, expires_at", "scope, key")
_UPSERT_SINGLETON = upsert("singletons", "function_id, key, run_id", "function_id, key")
_UPSERT_BUCKET = upsert("buckets", "function_id, key, run_id, deadline", "function_id, key")
_UPSERT_SLOT = upsert("slots", "key, job_id, expires_at", "key, job_id")


class FlowSql(Part):
    """``Tx.flow``: flow control's keys and slots; ``_lock`` serialises writers on a key
    (Postgres)."""

    __slots__ = ("_unclaimed",)

    def __init__(self, tx: TxSql) -> None:
        super().__init__(tx)
        #: runs ``read_ahead`` found holding no singleton nor bucket (``release_claims``
        #: has nothing to delete); a claim set here for one drops it
        self._unclaimed: set[str] = set()

    def read_ahead(self, run_ids: Sequence[str]) -> None:
        """Read which of many runs hold a singleton or a bucket, in one statement (a bulk
        action's batch): ``release_claims`` of the others sends nothing.

        A claim names a run from its start (the run is new) or while the run holds it:
        one that holds none when read gets none later.
        """
        wanted = sorted(set(run_ids))
        for at in range(0, len(wanted), 250):  # bounded IN lists (two of them)
            chunk = wanted[at : at + 250]
            marks = ",".join("?" * len(chunk))
            rows = self._x(
                f"SELECT run_id FROM singletons WHERE run_id IN ({marks}) "
                f"UNION SELECT run_id FROM buckets WHERE run_id IN ({marks})",
                (*chunk, *chunk),
            )
            self._unclaimed.update(set(chunk) - {str(r[0]) for r in rows})

    # flow control ---------------------------------------------------------------------
    def get_limit(self, scope: str, key: str) -> float | None:
        self._lock(f"limit:{scope}:{key}")
        row = self._x(
            "SELECT value FROM limits WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        return None if row is None else float(row[0])

    def set_limit(self, scope: str, key: str, value: float, expires_at: float) -> None:
        self._x(_UPSERT_LIMIT, (scope, key, value, expires_at))

    def singleton_run(self, function_id: str, key: str) -> str | None:
        self._lock(f"singleton:{function_id}:{key}")
        row = self._x(
            "SELECT run_id FROM singletons WHERE function_id = ? AND key = ?", (function_id, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_singleton(self, function_id: str, key: str, run_id: str) -> None:
        self._unclaimed.discard(run_id)
        self._x(_UPSERT_SINGLETON, (function_id, key, run_id))

    def get_bucket(self, function_id: str, key: str) -> tuple[str, float] | None:
        self._lock(f"bucket:{function_id}:{key}")
        row = self._x(
            "SELECT run_id, deadline FROM buckets WHERE function_id = ? AND key = ?",
            (function_id, key),
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def set_bucket(self, function_id: str, key: str, run_id: str, deadline: float) -> None:
        self._unclaimed.discard(run_id)
        self._x(_UPSERT_BUCKET, (function_id, key, run_id, deadline))

    def note_unclaimed(self, run_id: str) -> None:
        """``run_id`` holds no singleton nor bucket (it is new, or the caller knows)."""
        self._unclaimed.add(run_id)

    def may_hold_claims(self, run_id: str) -> bool:
        """False when ``read_ahead`` found the run holding no singleton nor bucket."""
        return run_id not in self._unclaimed

    def release_claims(self, run_id: str) -> None:
        if run_id in self._unclaimed:
            return
        self._x("DELETE FROM singletons WHERE run_id = ?", (run_id,))
        self._x("DELETE FROM buckets WHERE run_id = ?", (run_id,))

    # concurrency slots ------------------------------------------------------------------
    def acquire_slots(
        self, job_id: str, keys: Sequence[tuple[str, int]], now: float, until: float
    ) -> str | None:
        for key in sorted(k for k, _ in keys):  # one order everywhere: no lock cycles
            self._lock(f"slots:{key}")
        for key, limit in keys:
            (held,) = self._x(
                "SELECT COUNT(*) FROM slots WHERE key = ? AND expires_at > ? AND job_id != ?",
                (key, now, job_id),
            ).fetchone()
            if held >= limit:
                return key
        self._many(
            _UPSERT_SLOT,
            [(key, job_id, until) for key, _ in keys],
        )
        return None

    def release_slots(self, job_id: str) -> list[str]:
        rows = self._x("DELETE FROM slots WHERE job_id = ? RETURNING key", (job_id,))
        return [str(r[0]) for r in rows.fetchall()]

    def count_slots(self, key: str, now: float) -> int:
        (held,) = self._x(
            "SELECT COUNT(*) FROM slots WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return int(held)

    def expire_slots(self, now: float) -> dict[str, int]:
        # Expired slots another lease is deleting right now are left to it (it wakes
        # their keys), so the nodes' leases do not all queue up behind the same rows.
        rows = self._x(
            "DELETE FROM slots WHERE (key, job_id) IN (SELECT key, job_id FROM slots "
            f"WHERE expires_at <= ?{self._tx.skip_locked}) AND expires_at <= ? RETURNING key",
            (now, now),
        ).fetchall()
        freed: dict[str, int] = {}
        for (key,) in rows:
            freed[key] = freed.get(key, 0) + 1
        return freed
