"""The SQL of Connect presence (Postgres): which node holds ready workers of which app.

Each engine node with Connect workers writes one row per app it serves (its node id, the
URL other nodes forward that app's calls to, how many ready workers, when it last wrote);
a node that leases a call of an app with no worker of its own reads the fresh rows of
other nodes (``cluster``). Plain functions over a Postgres transaction (``execute``), kept out
of the store contract: a SQLite engine is one node, and has no such table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["nodes", "nodes_of", "publish", "withdraw"]


def publish(tx: Any, node: str, url: str, apps: Mapping[str, int], now: float) -> None:
    """This node serves ``apps`` (app id: ready workers) now; its other rows go."""
    tx.execute("DELETE FROM connect_presence WHERE node = ?", (node,))
    for app_id, workers in sorted(apps.items()):
        tx.execute(
            "INSERT INTO connect_presence (node, app_id, url, workers, seen_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (node, app_id, url, workers, now),
        )


def withdraw(tx: Any, node: str) -> None:
    """This node serves no Connect app any more (it stops)."""
    tx.execute("DELETE FROM connect_presence WHERE node = ?", (node,))


def nodes_of(tx: Any, app_id: str, other_than: str, since: float) -> list[tuple[str, str]]:
    """``(node, url)`` of the other nodes with ready workers of ``app_id``, most first."""
    rows = tx.execute(
        "SELECT node, url FROM connect_presence WHERE app_id = ? AND node <> ? "
        "AND seen_at >= ? AND workers > 0 ORDER BY workers DESC, node",
        (app_id, other_than, since),
    ).fetchall()
    return [(str(node), str(url)) for node, url in rows]


def nodes(tx: Any, other_than: str, since: float) -> list[tuple[str, str]]:
    """``(node, url)`` of every other node with ready workers written since ``since``."""
    rows = tx.execute(
        "SELECT DISTINCT node, url FROM connect_presence WHERE node <> ? AND seen_at >= ? "
        "ORDER BY node",
        (other_than, since),
    ).fetchall()
    return [(str(node), str(url)) for node, url in rows]
