"""A transaction's parts: each concern's SQL (the queue, apps, streams...) as an object.

``SqlTx`` (``sql.py``) holds the connection and the operations on runs, steps, events and
pauses that every engine path uses; each other concern's SQL is a part of it, reached by
name at the call site (``tx.queue.enqueue``, ``tx.apps.put_app``: the module of the same
name holds it, ``tx.metrics`` in ``function_metrics``). A transaction is made per step, so
a part is built only when first used (``LazyPart``) and kept for the rest of the
transaction. A part runs its statements on its transaction's connection (``TxSql``); a
dialect that differs in one concern subclasses that part (``PostgresQueueSql``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

__all__ = ["LazyPart", "Part", "TxSql"]

P_co = TypeVar("P_co", covariant=True)


class TxSql(Protocol):
    """What a part uses of its transaction (``SqlTx``): its connection and dialect, and
    what the store tells others once the transaction commits."""

    #: ids of the jobs the transaction queued or made due again (``Tx.queued``)
    queued: list[str]
    #: ends a locking subquery that skips rows others hold (Postgres), else empty
    skip_locked: str

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def lock(self, name: str) -> None: ...
    def row_lock(self) -> str: ...
    def is_new(self, run_id: str) -> bool: ...
    def note_apps_changed(self) -> None: ...
    def note_streamed(self, run_id: str) -> None: ...


class Part:
    """One concern's SQL over a transaction's connection.

    A part is a piece of its transaction, made by it: it binds the transaction's
    statement methods once, so a part's SQL reads as the transaction's own did.
    """

    __slots__ = ("_many", "_tx", "_x")

    def __init__(self, tx: TxSql) -> None:
        self._tx = tx
        self._x = tx.execute
        self._many = tx.execute_many

    def _lock(self, name: str) -> None:
        """Serialise writers on ``name`` until the transaction ends (Postgres)."""
        self._tx.lock(name)

    def _row_lock(self) -> str:
        """The clause a locking read in a write transaction ends with (where needed)."""
        return self._tx.row_lock()


class LazyPart(Generic[P_co]):
    """A transaction's part, built by ``build(tx)`` on first use and then kept on it.

    ``functools.cached_property`` without its lock (Python 3.11 takes one lock for every
    instance's first read): the first ``tx.queue`` builds the part into the instance's
    ``__dict__``, where every later read finds it with no call.
    """

    __slots__ = ("_build", "_name")

    def __init__(self, build: Callable[[Any], P_co]) -> None:
        self._build = build
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, tx: None, owner: type | None = None) -> LazyPart[P_co]: ...
    @overload
    def __get__(self, tx: object, owner: type | None = None) -> P_co: ...
    def __get__(self, tx: object, owner: type | None = None) -> Any:
        if tx is None:
            return self
        part = tx.__dict__[self._name] = self._build(tx)
        return part
