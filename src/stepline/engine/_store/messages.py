"""The SQL of run streams (``tx.messages``, table ``run_messages``): what a run publishes,
in order.

A part of both stores' transactions (``part``). Each run's messages are numbered ``seq``
1, 2, 3... in commit order, with no gaps: ``append_messages`` is called with the run's row
locked (``Tx.get_run`` in a write transaction reads it ``FOR UPDATE`` on Postgres; SQLite
has one writer), so two publishers to one run, on one node or two, take turns and the
second sees the first's last ``seq``. A durable message's ``durable_id`` is stored once
per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline.engine._store.part import Part
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


class MessagesSql(Part):
    """``Tx.messages``: the methods over ``run_messages``."""

    __slots__ = ()

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
            self._tx.note_streamed(run_id)
        return first

    #: a message's size in bytes, in SQL (Postgres's ``octet_length`` reads no TOASTed value)
    _octets = "length(CAST(data AS BLOB))"

    def read_messages(
        self, run_id: str, after: int, topic: str | None, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        """Messages of a run after ``after`` (of one topic), in order, and whether more follow.

        At most ``limit``; with ``max_bytes``, they stop before the message that would take
        their data past it, the first one always included: a page of large messages is
        bounded by its bytes, whatever the count asked. The sizes are read first, without
        the data (SQLite reads them a row at a time and stops at the bound), then the data
        of the messages chosen.
        """
        where, args = ("AND topic = ? ", (topic,)) if topic is not None else ("", ())
        sizes = self._x(
            f"SELECT seq, {self._octets} FROM run_messages WHERE run_id = ? "
            f"AND seq > ? {where}ORDER BY seq LIMIT ?",
            (run_id, after, *args, limit + 1),
        )
        bound = max_bytes if max_bytes is not None else float("inf")
        count, total, last, more = 0, 0, after, False
        for seq, size in sizes:
            if count == limit or (count and total + int(size) > bound):
                more = True
                break
            count, total, last = count + 1, total + int(size), int(seq)
        if not count:
            return [], False
        rows = self._x(
            "SELECT seq, topic, data, published_at FROM run_messages WHERE run_id = ? "
            f"AND seq > ? AND seq <= ? {where}ORDER BY seq",
            (run_id, after, last, *args),
        )
        found = [StoredMessage(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]
        return found, more


class PostgresMessagesSql(MessagesSql):
    """Postgres' flavour: a message's size with ``octet_length``, which reads no TOASTed
    value."""

    __slots__ = ()

    _octets = "octet_length(data)"
