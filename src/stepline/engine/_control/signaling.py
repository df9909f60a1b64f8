"""The engine's entry points for signals (REST, ``stepline.testing``): one transaction each.

Each wraps a function of ``signals`` (which the run transitions import, so it cannot name the
``Engine``) in ``Engine._atomic``, so the worker learns of the discovery call a delivered
signal queues. Answers the run id of the run the signal resumed.
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

    return str(await engine._atomic(work))


async def by_key(engine: Engine, key: str, data: Any) -> str:
    """Complete the wait under ``key`` (a run's token or an SDK's key; ``signals.by_key``)."""

    def work(tx: Tx) -> str:
        return _signals.by_key(engine.transitions, tx, key, data, engine.clock.now())

    return str(await engine._atomic(work))


async def by_token(engine: Engine, token: str, data: Any) -> str:
    """Complete the wait under a verified run token (``signals.by_token``)."""
    keys = engine.settings.signing_keys

    def work(tx: Tx) -> str:
        return _signals.by_token(
            engine.transitions, tx, token, data, now=engine.clock.now(), signing_keys=keys
        )

    return str(await engine._atomic(work))


async def token_state(engine: Engine, token: str) -> str | None:
    """What a hook's ``token`` is, in a read (``signals.token_state``): nothing is written."""
    keys = engine.settings.signing_keys

    def read(tx: Tx) -> str | None:
        return _signals.token_state(tx, token, signing_keys=keys)

    state: str | None = await engine.store.read(read)
    return state
