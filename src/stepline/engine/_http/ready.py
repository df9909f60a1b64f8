"""``GET /ready``: readiness (the database answers and its schema is current).

``/health`` says the process is alive; ``/ready`` says it can do its work. Both are
public, as load balancers and orchestrators probe them without a key. A 503 names the
reason, never a credential.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

import starlette.responses

from stepline.engine._http import wire
from stepline.engine._store import Tx, dsn, postgres_schema, sqlite_schema
from stepline.engine._store.sql import SqlTx

if TYPE_CHECKING:
    from stepline.engine._engine import Engine

logger = logging.getLogger("stepline.engine")
#: the longest a probe waits for the database before answering 503
PROBE_SECONDS = 5.0


async def ready(engine: Engine) -> starlette.responses.Response:
    """200 ``{"status": "ready"}``, or 503 with ``reason`` when the engine cannot work.

    Args:
        engine: the engine served.

    Returns:
        The answer to ``GET /ready``.
    """
    url = engine.settings.database_url
    postgres = url.startswith(("postgres://", "postgresql://"))
    want = len(postgres_schema.MIGRATIONS if postgres else sqlite_schema.MIGRATIONS)
    try:
        version = await asyncio.wait_for(
            engine.store.read(lambda tx: _version(tx, postgres=postgres)), PROBE_SECONDS
        )
    except Exception as exc:  # unreachable, gone, closed: say so, whatever it was
        reason = dsn.scrub(str(exc).strip() or type(exc).__name__, url).splitlines()[0]
        logger.warning("not ready: the database does not answer: %s", reason)
        return _unready(f"the database does not answer: {reason}")
    if version < want:
        reason = f"the database schema is at version {version}, this engine needs {want}"
        logger.warning("not ready: %s (run `stepline migrate`)", reason)
        return _unready(f"{reason}: run `stepline migrate`")
    return wire.json_response({"status": "ready", "schema_version": version})


def _unready(reason: str) -> starlette.responses.Response:
    return wire.json_response({"status": "unavailable", "reason": reason}, status=503)


def _version(tx: Tx, *, postgres: bool) -> int:
    query = (
        "SELECT COALESCE(MAX(version), 0) FROM stepline_schema"
        if postgres
        else "PRAGMA user_version"
    )
    row = cast(SqlTx, tx)._x(query).fetchone()
    return int(row[0]) if row else 0
