"""The connected workers as the REST API and the dashboard show them. Pure.

``GET /v1/connect/workers`` lists every worker connected to this engine node and, on
several nodes (Postgres), those the other nodes with ready workers list (asked over HTTP,
2 s at most each; ``?local=1`` lists this node's only); ``GET /v1/apps/{app_id}/workers``
those serving one app (with that app's functions and version). Each: its connection and
instance ids, the node it is connected to, its SDK, framework, apps, functions, calls in
flight (and its concurrency limit), when it connected and was last heard from, and its
status: ``ready``, ``draining`` (it asked for no new calls) or ``connecting`` (registered,
not ready yet).
"""

from __future__ import annotations

from typing import Any

from stepline.engine._connect.hub import Conn
from stepline.engine._http.views import timestamp

__all__ = ["status", "worker"]


def status(conn: Conn) -> str:
    """``draining``, ``ready`` or ``connecting``."""
    if conn.draining:
        return "draining"
    return "ready" if conn.ready else "connecting"


def worker(conn: Conn, node: str, app_id: str | None = None) -> dict[str, Any]:
    """One worker; with ``app_id``, that app's functions and version only."""
    apps = [app_id] if app_id is not None else sorted(conn.apps)
    return {
        "connection_id": conn.conn_id,
        "instance_id": conn.instance_id,
        "node": node,
        "sdk": conn.sdk,
        "framework": conn.framework or None,
        "app_ids": sorted(conn.apps),
        "versions": {app: conn.versions.get(app) for app in apps},
        "functions": sorted(f for app in apps for f in conn.functions.get(app, ())),
        "in_flight": len(conn.inflight),
        "max_concurrency": conn.max_inflight,
        "calls_sent": conn.sent,
        "connected_at": timestamp(conn.connected_at),
        "last_heartbeat_at": timestamp(conn.last_seen),
        "status": status(conn),
    }
