"""A SQLite store fault injected at commit: the writer refuses whole groups while a flag is
set, as SQLite does when the disk is full (nothing of a refused group is committed: its
work is not run at all, as when SQLite refuses the transaction's first write)."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

from stepline.engine._store import outcomes as _outcomes
from stepline.engine._store.sqlite import SqliteStore

FULL = "database or disk is full"


def refuse(batch: list[Any], message: str) -> None:
    """Fail every transaction of a writer's group with ``sqlite3.OperationalError``
    (an awaiting coroutine's on its loop, a blocked thread's at once)."""
    for _, waiter in batch:
        _outcomes.deliver(waiter, False, sqlite3.OperationalError(message))


def failing_commits(monkeypatch: pytest.MonkeyPatch, message: str = FULL) -> threading.Event:
    """Make every ``SqliteStore`` refuse its commits while the returned event is set."""
    failing = threading.Event()
    commit = SqliteStore._commit_group

    def faulty(self: SqliteStore, batch: list[Any], wait: bool = True) -> None:
        if failing.is_set():
            refuse(batch, message)
        else:
            commit(self, batch, wait)

    monkeypatch.setattr(SqliteStore, "_commit_group", faulty)
    return failing
