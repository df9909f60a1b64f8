"""The app's users: one SQLite table through the standard library (no models, no migrations)."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator
from typing import Any

from django.conf import settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    run_id TEXT,
    onboarded INTEGER NOT NULL DEFAULT 0
)
"""


class EmailTaken(Exception):
    """Someone already signed up with that email."""


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    run_id: str | None = None
    onboarded: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def _db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(settings.SIGNUP_USERS_DB, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        with conn:  # one transaction
            conn.execute(_SCHEMA)
            yield conn
    finally:
        conn.close()


def create(email: str, name: str) -> User:
    """Add a user; raises ``EmailTaken`` for a known email."""
    try:
        with _db() as conn:
            cursor = conn.execute("INSERT INTO users (email, name) VALUES (?, ?)", (email, name))
    except sqlite3.IntegrityError:
        raise EmailTaken(email) from None
    assert cursor.lastrowid is not None
    return User(cursor.lastrowid, email, name)


def get(user_id: int) -> User | None:
    with _db() as conn:
        row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        return None
    return User(row["id"], row["email"], row["name"], row["run_id"], bool(row["onboarded"]))


def set_run(user_id: int, run_id: str) -> None:
    with _db() as conn:
        conn.execute("UPDATE users SET run_id = ? WHERE id = ?", (run_id, user_id))


def mark_onboarded(user_id: int) -> None:
    with _db() as conn:
        conn.execute("UPDATE users SET onboarded = 1 WHERE id = ?", (user_id,))
