"""Count what a process sends to Postgres through psycopg 3: statements, round trips, rows.

Shared by both sides of the Postgres benchmarks (stepline's venv and the peers' venv, where
DBOS talks to Postgres through SQLAlchemy over the same psycopg), so the two are counted
the same way, at the driver:

* ``statements``: ``Cursor.execute`` calls (each statement of a simple query of several,
  joined by ``";\n"`` as stepline's Postgres transactions send them), plus one per
  parameter set of ``executemany``;
* ``commands``: the commands psycopg sends on its own (``BEGIN``, ``COMMIT``,
  ``ROLLBACK``, savepoints), and those riding in a simple query of several;
  ``commits``: the ``COMMIT``s, and each write statement run in autocommit outside a
  transaction (a statement that is its own transaction, as stepline's one-statement
  answer on Postgres is);
* ``round_trips``: ``execute`` calls + ``executemany`` calls + commands (an
  ``executemany`` is pipelined by psycopg: counted as one);
* ``rows``: rows inserted, updated or deleted (the command tag says which; the count is
  the cursor's ``rowcount``): a statement whose writes are ``WITH`` clauses of a
  ``SELECT`` counts none.

``install()`` patches psycopg's classes once per process (bench code only: it reaches
into ``psycopg._connection_base``); ``snapshot()`` returns the totals so far, a
measurement subtracts two. The cost is a lock and a few additions per statement.
"""

from __future__ import annotations

import threading
from typing import Any

FIELDS = ("statements", "commands", "commits", "round_trips", "rows")
_counts = dict.fromkeys(FIELDS, 0)
_lock = threading.Lock()
_installed: list[bool] = []  # non-empty once install() ran
_WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")
#: how a write statement starts (``WITH``: data-modifying clauses, as a fenced answer is)
_AUTOCOMMIT_WRITES = frozenset({*_WRITES, "WITH"})
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, without importing psycopg at import time
#: a transaction's commands as they ride in a simple query of several statements
_COMMANDS = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})


def _add(**more: int) -> None:
    with _lock:
        for name, n in more.items():
            _counts[name] += n


def _written(cur: Any) -> int:
    tag = cur.statusmessage or ""
    return max(cur.rowcount, 0) if tag.startswith(_WRITES) else 0


def _committed(cur: Any, args: tuple[Any, ...]) -> int:
    """1 for a write that was its own transaction (autocommit, no transaction open)."""
    conn = cur.connection
    if not conn.autocommit or conn.info.transaction_status != _IDLE or not args:
        return 0
    words = str(args[0]).split(None, 1)
    return int(bool(words) and words[0].upper() in _AUTOCOMMIT_WRITES)


def install() -> None:
    """Start counting (idempotent)."""
    if _installed:
        return
    import psycopg
    from psycopg import _connection_base

    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    command = _connection_base.BaseConnection._exec_command

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        autocommitted = _committed(self, args)  # read before: the query may end the transaction
        out = execute(self, *args, **kwargs)
        parts = str(args[0]).split(";\n") if args else [""]
        commands = sum(part in _COMMANDS for part in parts)
        _add(
            statements=len(parts) - commands,
            commands=commands,
            round_trips=1,
            rows=_written(self),
            commits=autocommitted + parts.count("COMMIT"),
        )
        return out

    def counted_executemany(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        params = list(params_seq)
        out = executemany(self, query, params, **kwargs)
        _add(statements=len(params), round_trips=1, rows=_written(self))
        return out

    def counted_command(self: Any, cmd: Any, *args: Any, **kwargs: Any) -> Any:
        text = cmd if isinstance(cmd, bytes) else str(cmd).encode()
        _add(commands=1, round_trips=1, commits=int(text.strip().upper() == b"COMMIT"))
        return command(self, cmd, *args, **kwargs)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted_executemany  # type: ignore[method-assign]
    _connection_base.BaseConnection._exec_command = counted_command  # type: ignore[method-assign]
    _installed.append(True)


def snapshot() -> dict[str, int]:
    """The totals counted so far in this process."""
    with _lock:
        return dict(_counts)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in FIELDS}


# -- Postgres backends' CPU (Linux /proc; the server runs on this machine) --------------------


def backend_pids(
    conn: Any, *, application_name: str | None = None, datname: str | None = None
) -> list[int]:
    """The server pids of the backends with this application name or on this database."""
    if application_name is not None:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (datname,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a local process has used, 0 if gone or unreadable."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """CPU used by a set of Postgres backends between ``start()`` and ``stop()``.

    The set is read at both ends: a backend that ended in between is not counted, one
    that started counts from zero (its start-up included). Pools keep theirs open.
    """

    def __init__(self, conn: Any, **which: str) -> None:
        self.conn, self.which = conn, which
        self.before: dict[int, float] = {}

    def start(self) -> None:
        self.before = {pid: proc_cpu(pid) for pid in backend_pids(self.conn, **self.which)}

    def stop(self) -> float:
        pids = set(backend_pids(self.conn, **self.which)) | set(self.before)
        return sum(max(proc_cpu(pid) - self.before.get(pid, 0.0), 0.0) for pid in pids)
