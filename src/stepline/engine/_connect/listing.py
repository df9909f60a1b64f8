"""The connected workers as the REST API and the dashboard show them. Pure.

``GET /v1/connect/workers`` lists every worker connected to this engine node and, on
several nodes (Postgres), those the other nodes with ready workers list (asked over HTTP,
2 s at most each; ``?local=1`` lists this node's only); ``GET /v1/apps/{app_id}/workers``
those serving one app (with that app's functions and version). Each: its connection and
instance ids, the node it is connected to, its SDK, framework, apps, functions, calls in
flight (and its concurrency limit), when it connected and was last heard from, and its
status: ``ready``, ``draining`` (it asked for no new calls) or ``connecting`` (registered,
not ready yet).

``GET /v0/connect/envs/{env_id}/conns`` is Inngest's dev server's listing (any env id),
in its shape (``connect.v1.ConnMetadata`` as Go's ``encoding/json`` writes it: snake-case
fields, zero values left out, the status as a number), oldest connection first as the
dev server's Redis hash keeps them: tools written for it (the official SDKs' own
scenarios) wait on it for a worker's ``instance_id``, and some read the last entry only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from stepline.engine._connect.hub import Conn
from stepline.engine._http.views import timestamp

__all__ = ["dev_server_conn", "in_connection_order", "status", "worker"]

#: ``connect.v1.ConnectionStatus``: CONNECTED is 0, so left out of the JSON.
_READY, _DRAINING = 1, 2


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


def dev_server_conn(conn: Conn, node: str) -> dict[str, Any]:
    """One connection as Inngest's dev server lists it (``ConnMetadata``).

    ``all_worker_groups`` and ``synced_worker_groups`` map each app the worker serves to
    its group's hash (the worker's apps are registered before it is listed, so both
    hold every app); ``gateway_id`` is the engine node the worker is connected to.
    """
    language, _, version = conn.sdk.partition(":")
    groups = {app: _group_hash(conn, app) for app in sorted(conn.apps)}
    seconds = math.floor(conn.last_seen)
    nanos = int((conn.last_seen - seconds) * 1_000_000) * 1000
    found: dict[str, Any] = {
        "id": conn.conn_id,
        "gateway_id": node,
        "instance_id": conn.instance_id,
        "all_worker_groups": groups,
        "synced_worker_groups": groups,
        "status": _DRAINING if conn.draining else _READY if conn.ready else 0,
        "last_heartbeat_at": {"seconds": seconds, **({"nanos": nanos} if nanos else {})},
        "sdk_language": language,
        "sdk_version": version.removeprefix("v"),
    }
    return {key: value for key, value in found.items() if value not in ("", 0, {})}


def in_connection_order(conns: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dev-server listings (this node's and other nodes') merged, oldest first.

    Connection ids are ULIDs minted by the start call, so they sort by when each
    worker began to connect, whichever node it is on.
    """
    return sorted(conns, key=lambda conn: str(conn.get("id", "")))


def _group_hash(conn: Conn, app: str) -> str:
    """A worker group's hash: the same app, functions and version hash the same."""
    shape = [app, sorted(conn.functions.get(app, ())), conn.versions.get(app)]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()
