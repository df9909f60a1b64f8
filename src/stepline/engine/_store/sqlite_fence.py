"""A call on SQLite taken as the transaction before left it, when nothing was written since.

A worker's answer reads the call's job joined with its run's row (``Tx.get_call``),
records the step, and moves the job to the run's next call, which the same worker then
makes; a per-step checkpoint, or a durable endpoint's, reads its call the same way and
records steps under it. The next transaction on that call read again what the one before
had just written. When nothing was written to the database since, the rows are still as
that transaction left them, and it may take them from memory (``Fence``) instead.

What "nothing was written since" rests on, checked by the next transaction with the
write lock held:

- this connection's ``total_changes``: every row any statement of the writer's
  connection inserted, updated or deleted, triggers included, whether committed or not.
  Unchanged: no transaction of this process wrote a row (every write of the store goes
  through that connection);
- ``PRAGMA data_version``: it changes when another connection, of this process or any
  other, commits to the file. It is read inside the transaction that leaves the fence
  (no other writer can commit while it holds the write lock), and inside the one that
  takes it.

A fence is left only by a transaction of one unit of work (a group commit's other units
write too) that read its call with the run's row and no function paused, and then wrote
no job, or moved that call's job to the run's next call with no other write to ``jobs``
after it (``SqliteTx.execute_jobs``). The run's row is the one the transaction holds for it
(``SqlTx.run_row``: every write to ``runs`` goes through ``insert_run``/``update_run``
or forgets it), with its steps revision. None is left while other transactions wait
for the writer: they would commit before the call's next one. A fence that does not
hold costs a dict lookup and the ``PRAGMA``, and the call is read as before; one is
taken at most once.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

#: fences kept at most (each a call in flight, or one whose run ended): the oldest go
LIMIT = 4096


@dataclasses.dataclass(slots=True)
class Fence:
    """A call and its run as a committed transaction left them.

    Attributes:
        conn: the writer's connection that committed it.
        changes: that connection's ``total_changes`` after the transaction's writes.
        version: ``PRAGMA data_version`` as the transaction read it.
        job: the call's job row (``JOB_COLUMNS``).
        run: its run's row (``RUN_COLUMNS``).
        revision: the run's steps revision (``runs.steps_rev``).
    """

    conn: sqlite3.Connection
    changes: int
    version: int
    job: Sequence[Any]
    run: Sequence[Any]
    revision: int


class Fences(dict[str, Fence]):
    """The fences a store holds, by the job id of the call each is for; ``pop`` takes
    one (a fence serves once).

    Only the writer's role uses them (each transaction's ``get_call``, and the commit
    that keeps what a transaction left), one thread at a time: no lock of their own."""

    def keep(self, fence: Fence, limit: int = LIMIT) -> None:
        self[str(fence.job[0])] = fence
        if len(self) > limit:
            del self[next(iter(self))]
