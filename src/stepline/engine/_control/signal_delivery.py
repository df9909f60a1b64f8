"""Delivering a signal from outside the engine (REST, ``stepline.testing``): one transaction each.

``signals`` holds the rules, run inside a caller's transaction: a step's wait for a
signal (the run transitions record it) and what completes one. This module is the
engine's side of a delivery: each function runs one of those rules in
``Engine.commit``, so the worker learns of the discovery call a delivered signal
queues, and answers the run id of the run the signal resumed. The two are apart because
the run transitions import ``signals``, which therefore cannot name the ``Engine``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepline.engine._control import signals as _signals
from stepline.engine._store import Tx

if TYPE_CHECKING:
    from stepline.engine._engine import Engine

__all__ = ["by_key", "by_token", "to_run", "token_state"]


async def to_run(engine: Engine, run_id: str, name: str, data: Any) -> str:
    """Complete ``run_id``'s wait for signal ``name`` with ``data`` (see ``signals.to_run``)."""

    def work(tx: Tx) -> str:
        return _signals.to_run(engine.transitions, tx, run_id, name, data, now=engine.clock.now())

    return str(await engine.commit(work))


async def by_key(engine: Engine, key: str, data: Any) -> str:
    """Complete the wait under ``key`` (a run's token or an SDK's key; ``signals.by_key``)."""

    def work(tx: Tx) -> str:
        return _signals.by_key(engine.transitions, tx, key, data, engine.clock.now())

    return str(await engine.commit(work))


async def by_token(engine: Engine, token: str, data: Any) -> str:
    """Complete the wait under a verified run token (``signals.by_token``)."""
    keys = engine.settings.signing_keys

    def work(tx: Tx) -> str:
        return _signals.by_token(
            engine.transitions, tx, token, data, now=engine.clock.now(), signing_keys=keys
        )

    return str(await engine.commit(work))


async def token_state(engine: Engine, token: str) -> str | None:
    """What a hook's ``token`` is, in a read (``signals.token_state``): nothing is written."""
    keys = engine.settings.signing_keys

    def read(tx: Tx) -> str | None:
        return _signals.token_state(tx, token, signing_keys=keys)

    state: str | None = await engine.store.read(read)
    return state
