"""The engine relaying an outbox itself: no relay process, no HTTP hop.

With ``EngineSettings.relay_outbox`` set (``--relay-outbox``, ``STEPLINE_RELAY_OUTBOX``,
or an embedded engine's ``relay_outbox=``), the engine runs the outbox relay
(``stepline.outbox._relay``) on a thread of its own and hands each row straight to its own
``send`` and ``start_function`` (``inprocess``). ``relay_outbox`` names the database that
holds ``stepline_outbox``:

- ``self``: the engine's own database (an app sharing the engine's Postgres); woken by
  ``LISTEN stepline_outbox`` at each writer's commit;
- a database URL (``postgresql://``, ``mysql://``, ``sqlite:///``, a SQLite path): the
  app's database, e.g. for an embedded engine next to a SQLAlchemy app;
- ``django`` or ``django:ALIAS``: a Django project's connection (the embedded engine in
  a Django process).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepline.engine._relay.inprocess import RelayHost
    from stepline.outbox._relay import RelayStats

__all__ = ["tasks"]

logger = logging.getLogger("stepline.engine.relay")


def tasks(engine: RelayHost) -> list[asyncio.Task[None]]:
    """The engine's relay task, if ``relay_outbox`` is set (started with the worker)."""
    if not engine.settings.relay_outbox:
        return []
    return [asyncio.create_task(_relay(engine), name="stepline-outbox-relay")]


async def _relay(engine: RelayHost) -> None:
    """Run the relay on a thread until this task is cancelled (the engine stops)."""
    # here, not at import: an engine that relays nothing loads none of the outbox's code
    from stepline.engine._relay import inprocess, target
    from stepline.outbox import _relay

    # the engine's own database through a session of the relay's (Postgres itself when the
    # engine's URL is a pooler's): the relay LISTENs, and psycopg prepares its statements
    own = engine.settings.database_direct_url or engine.settings.database_url
    where = target.resolve(engine.settings.relay_outbox or "", own)
    deliver = inprocess.InProcessDeliverer(engine, asyncio.get_running_loop())
    metrics = _metrics(engine)

    def work() -> None:
        settings = _relay.RelaySettings(poll_interval=engine.settings.poll_interval)
        relay = _relay.Relay(where.open(), deliver.deliver, settings, on_batch=metrics)
        deliver.on_stop(relay.stop)  # at once if the engine stopped meanwhile
        try:
            if where.listen is not None:
                _relay.listen(where.listen, relay, deliver.stopped)
            relay.run()
        finally:
            relay.close()
            where.release()

    thread = asyncio.create_task(asyncio.to_thread(work))
    try:
        await asyncio.shield(thread)
    except asyncio.CancelledError:
        deliver.stop()
        await asyncio.gather(thread, return_exceptions=True)
        raise
    except Exception:
        logger.exception("the outbox relay stopped")


#: the outbox families of each engine's metrics registry (registered once per registry)
_FAMILIES: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _metrics(engine: RelayHost) -> Callable[[RelayStats], None] | None:
    """Mirror the relay's stats into the engine's ``GET /metrics`` (None: metrics off)."""
    observer = engine.observer
    registry = getattr(getattr(observer, "metrics", None), "registry", None)
    if registry is None:
        return None
    if registry not in _FAMILIES:
        _FAMILIES[registry] = (
            registry.gauge(
                "stepline_outbox_backlog", "Committed outbox rows this engine has yet to relay."
            ),
            registry.counter(
                "stepline_outbox_delivered_total", "Outbox rows this engine has relayed."
            ),
        )
    backlog, delivered = _FAMILIES[registry]
    counted = 0

    def record(stats: RelayStats) -> None:
        nonlocal counted
        backlog.set(float(stats.backlog))
        delivered.inc(amount=float(stats.delivered - counted))
        counted = stats.delivered

    return record
