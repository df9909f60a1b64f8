"""Delivering an outbox row to this very engine: its ``send`` and ``start_function``.

The relay runs on a thread; each row is one coroutine on the engine's loop, awaited from
that thread. The answers map as the HTTP relay's do (``stepline.outbox._relay_deliver``):
an invalid event or start, an unknown function or a taken run id is REJECTED (the row
waits on its backoff), a start flow control skipped is DELIVERED with a note, anything
else (the store unreachable...) is UNAVAILABLE and the relay backs off.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from stepline._api import ownership
from stepline.engine._config import EngineSettings
from stepline.engine._errors import EndpointOnlyError, NotFoundError, SkippedError
from stepline.engine._events import EventError
from stepline.engine._ids import SeedError
from stepline.engine._runs import starts
from stepline.outbox._relay_deliver import Delivered, DeliveryOutcome

__all__ = ["InProcessDeliverer", "RelayHost", "deliver"]

_MAX_KEY = 256


class RelayHost(Protocol):
    """What the relay needs of the engine (``Engine``)."""

    settings: EngineSettings
    observer: Any  # the engine's ``Observer`` (None: metrics and tracing off)

    async def send(
        self, raw: object, *, seed: str | None = None, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """Store events and start what they trigger."""
        ...

    async def start_function(
        self,
        function_id: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        started_by: str | None = None,
        run_id: str | None = None,
    ) -> tuple[str, bool]:
        """Start a run of one function."""
        ...


class InProcessDeliverer:
    """Hands rows to ``engine`` on ``loop`` from the relay's thread."""

    def __init__(self, engine: RelayHost, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.stopped = threading.Event()
        self._on_stop: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at ``stop`` (at once if already stopped)."""
        with self._lock:
            if not self.stopped.is_set():
                self._on_stop.append(callback)
                return
        callback()

    def stop(self) -> None:
        """The engine is stopping: stop the relay after its batch."""
        with self._lock:
            self.stopped.set()
            callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()

    def deliver(self, kind: str, raw_body: str) -> Delivered:
        """Deliver one row; blocks the relay's thread until the engine has committed it."""
        try:
            body = json.loads(raw_body)
        except ValueError as exc:
            return Delivered(DeliveryOutcome.REJECTED, f"unreadable {kind!r} row: {exc}")
        return asyncio.run_coroutine_threadsafe(
            deliver(self.engine, kind, body), self.loop
        ).result()


async def deliver(engine: RelayHost, kind: object, body: object) -> Delivered:
    """Hand one row (its decoded body) to ``engine``; what the outcome means for the row."""
    try:
        work = _work(engine, kind, json.loads(body) if isinstance(body, str) else body)
    except (ValueError, KeyError, TypeError) as exc:
        return Delivered(DeliveryOutcome.REJECTED, f"unreadable {kind!r} row: {exc}")
    try:
        await work
    except (
        EventError,
        SeedError,
        NotFoundError,
        EndpointOnlyError,
        starts.RunIdTakenError,
    ) as exc:
        return Delivered(DeliveryOutcome.REJECTED, f"{type(exc).__name__}: {exc}")
    except SkippedError as exc:
        return Delivered(DeliveryOutcome.DELIVERED, f"skipped by the engine: {exc}")
    except Exception as exc:
        return Delivered(DeliveryOutcome.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
    return Delivered(DeliveryOutcome.DELIVERED)


def _work(engine: RelayHost, kind: object, body: Any) -> Coroutine[Any, Any, Any]:
    if not isinstance(body, dict):
        raise TypeError("the row's body is not a JSON object")
    if kind == "event":
        return engine.send(list(body["events"]), seed=str(body["seed"]))
    if kind != "start":
        raise ValueError(f"unknown row kind {kind!r}")
    run_id, key, by = body["run_id"], body.get("idempotency_key"), body.get("started_by")
    data = body.get("data") or {}
    problem = starts.run_id_problem(run_id)
    if problem is None and not isinstance(data, dict):
        problem = "data: want a JSON object"
    if problem is None and key is not None:
        ok = isinstance(key, str) and 0 < len(key) <= _MAX_KEY
        problem = None if ok else "idempotency_key: want a string of 1-256 characters"
    if problem is None and by is not None:
        problem = ownership.principal_problem(by) if isinstance(by, str) else "started_by"
    if problem is not None:
        raise ValueError(problem)
    return engine.start_function(
        str(body["function_id"]), data, idempotency_key=key, started_by=by, run_id=run_id
    )
