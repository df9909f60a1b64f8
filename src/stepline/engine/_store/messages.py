"""The SQL of run streams (``run_messages``): what a run publishes, in order.

A mixin of ``SqlTx``'s dialect that both stores' transactions inherit, as ``versions``
is. Each run's messages are numbered ``seq`` 1, 2, 3... in commit order, with no gaps:
``append_messages`` is called with the run's row locked (``Tx.get_run`` in a write
transaction reads it ``FOR UPDATE`` on Postgres; SQLite has one writer), so two
publishers to one run, on one node or two, take turns and the second sees the first's
last ``seq``. A durable message's ``durable_id`` is stored once per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline.engine._store.mixin import SqlMixin
from stepline.engine._store.rows import insert

MESSAGE_COLUMNS = "run_id, seq, topic, data, published_at, durable_id"
_INSERT = insert("run_messages", MESSAGE_COLUMNS)


@dataclasses.dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append: ``data`` is its JSON text, ``durable_id`` its step (or None)."""

    topic: str
    data: str
    durable_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored message; ``data`` is its JSON text, as published."""

    seq: int
    topic: str
    data: str
    published_at: float


class MessagesTx(SqlMixin):
    """``Tx`` methods over ``run_messages``; mixed into each store's transaction class."""

    def _streamed(self, run_id: str) -> None:
        """Messages were appended to ``run_id`` (Postgres tells the other nodes)."""

    def durable_seqs(self, run_id: str, durable_ids: Sequence[str]) -> dict[str, int]:
        """The seqs already given to these durable ids in this run."""
        found: dict[str, int] = {}
        unique = sorted(set(durable_ids))
        for start in range(0, len(unique), 200):  # bounded IN lists
            chunk = unique[start : start + 200]
            rows = self._x(
                "SELECT durable_id, seq FROM run_messages WHERE run_id = ? "
                f"AND durable_id IN ({','.join('?' * len(chunk))})",
                (run_id, *chunk),
            )
            found.update((str(r[0]), int(r[1])) for r in rows)
        return found

    def append_messages(self, run_id: str, messages: Sequence[NewMessage], now: float) -> int:
        """Append ``messages`` after the run's last; returns the first one's seq.

        The caller holds the run's row (see the module's docstring) and has left out
        durable ids already stored (``durable_seqs``).
        """
        row = self._x(
            "SELECT COALESCE(MAX(seq), 0) FROM run_messages WHERE run_id = ?", (run_id,)
        ).fetchone()
        first = int(row[0]) + 1
        self._many(
            _INSERT,
            [
                (run_id, first + i, m.topic, m.data, now, m.durable_id)
                for i, m in enumerate(messages)
            ],
        )
        if messages:
            self._streamed(run_id)
        return first

    def read_messages(
        self, run_id: str, after: int, topic: str | None, limit: int
    ) -> list[StoredMessage]:
        """Up to ``limit`` messages of a run after ``after``, in order (of one topic)."""
        where, args = ("AND topic = ? ", (topic,)) if topic is not None else ("", ())
        rows = self._x(
            "SELECT seq, topic, data, published_at FROM run_messages WHERE run_id = ? "
            f"AND seq > ? {where}ORDER BY seq LIMIT ?",
            (run_id, after, *args, limit),
        )
        return [StoredMessage(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]
