"""``GET /ready``: readiness (the database answers, at the schema this engine knows).

``/health`` says the process is alive; ``/ready`` says it can do its work. Both are
public, as load balancers and orchestrators probe them without a key. A 503 names the
reason, never a credential. A schema newer than the engine knows (another node migrated
it, and the engine leases nothing more: ``_worker/schema_watch.py``) answers 503 with both
versions and what to do; an older one, with ``stepline migrate``. A node stopping
answers 503 ``draining`` from the signal on (``draining.py``), before anything else.
While the last write failed with a database fault (locked, disk full, read-only:
``_store/guard.py``) it answers 503 with the cause, after trying one small write itself
(so an idle engine notices the fault cleared). On SQLite the answer carries the
write-ahead log's size (``sqlite_wal_bytes``, see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import starlette.responses

from stepline.engine._http import draining, wire
from stepline.engine._store import Tx, dsn, is_postgres, known_schema, schema_version
from stepline.engine._store.faults import StoreUnavailable

if TYPE_CHECKING:
    from stepline.engine._engine import Engine

logger = logging.getLogger("stepline.engine")
#: the longest a probe waits for the database before answering 503
PROBE_SECONDS = 5.0
#: the longest the probe's write waits while degraded (a lock would hold it for the busy
#: timeout: a probe answers 503 sooner than orchestrators give up on it)
WRITE_PROBE_SECONDS = 1.0


async def ready(
    engine: Engine, drain: draining.Drain | None = None
) -> starlette.responses.Response:
    """200 ``{"status": "ready"}``, or 503 with ``reason`` when the engine cannot work.

    Args:
        engine: the engine served.
        drain: the server's stop: while it drains, 503 ``draining`` (a load balancer
            moves traffic away before the listener closes).

    Returns:
        The answer to ``GET /ready``.
    """
    if drain is not None and drain.draining:
        reason = "the engine is stopping: send requests to another node"
        return wire.json_response({"status": "draining", "reason": reason}, status=503)
    url = engine.settings.database_url
    postgres = is_postgres(url)
    if engine.worker.refusal is not None:  # the schema moved past this running engine
        return _unready(engine.worker.refusal)
    if engine.health.degraded:
        fault = await _probe(engine)
        if fault is not None:
            reason = f"the database refuses writes: {fault['cause']}"
            body = {"status": "unavailable", "reason": reason, **fault}
            return wire.json_response(body, status=503)
    want = known_schema(engine.settings)
    try:
        version = await asyncio.wait_for(
            engine.store.read(lambda tx: schema_version.recorded(tx, postgres=postgres)),
            PROBE_SECONDS,
        )
    except Exception as exc:  # unreachable, gone, closed: say so, whatever it was
        reason = dsn.scrub(str(exc).strip() or type(exc).__name__, url).splitlines()[0]
        logger.warning("not ready: the database does not answer: %s", reason)
        return _unready(f"the database does not answer: {reason}")
    if version > want:  # before the watch has seen it: the same answer
        return _unready(schema_version.refusal(version, want))
    if version < want:
        reason = f"the database schema is at version {version}, this engine needs {want}"
        logger.warning("not ready: %s (run `stepline migrate`)", reason)
        return _unready(f"{reason}: run `stepline migrate`")
    answer: dict[str, object] = {"status": "ready", "schema_version": version}
    wal = engine.health.wal_bytes()
    if wal is not None:
        answer["sqlite_wal_bytes"] = wal
    return wire.json_response(answer)


async def _probe(engine: Engine) -> dict[str, object] | None:
    """One small real write; what the fault still is if it fails (None: it cleared)."""

    def write(tx: Tx) -> None:
        now = time.time()  # a claim that expires at once: rewritten by every probe
        tx.claim_key("stepline:ready", "probe", now, now)

    with contextlib.suppress(StoreUnavailable, asyncio.TimeoutError):
        await asyncio.wait_for(engine.store.atomic(write), WRITE_PROBE_SECONDS)
    return engine.health.report()


def _unready(reason: str) -> starlette.responses.Response:
    return wire.json_response({"status": "unavailable", "reason": reason}, status=503)
