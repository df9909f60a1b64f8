"""An engine process that SIGKILLs itself at a chosen point.

``python tests/apps/self_killing_engine.py PORT DB``.

``FAULT_KILL=<point>:<n>`` picks the moment, counted from this process's start:

* ``start:<n>`` - inside the transaction that starts runs, right after the n-th run is
  inserted: mid fan-out when one event starts several functions (nothing of that
  transaction may survive);
* ``apply:<n>`` - inside the transaction recording the n-th SDK answer, before it
  commits (the step ran; its result must be lost and the step retried);
* ``commit:<n>`` - just after the n-th write transaction committed, before the engine
  acts on it (what it committed must be enough to carry on).

Without ``FAULT_KILL`` (or when the point is never reached) it runs until killed from
outside. Short leases let a restarted engine take over the dead one's jobs quickly.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any

import uvicorn

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._runs import starts as _starts
from stepline.engine._runs.transitions import RunTransitions


def _install(spec: str) -> None:
    point, _, number = spec.partition(":")
    target = int(number)
    seen = 0

    def hit() -> None:
        nonlocal seen
        seen += 1
        if seen == target:
            sys.stderr.write(f"FAULT_KILL {spec}: killing myself\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def after(original: Any) -> Any:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            hit()
            return result

        return wrapper

    if point == "start":
        _starts.start_run = after(_starts.start_run)
    elif point == "apply":
        RunTransitions.apply = after(RunTransitions.apply)  # type: ignore[method-assign]
    elif point == "commit":
        _commit_hook(hit)
    else:
        raise SystemExit(f"unknown FAULT_KILL point {point!r}")


def _commit_hook(hit: Any) -> None:
    from stepline.engine._store.postgres import PostgresStore
    from stepline.engine._store.sqlite import SqliteStore

    for store in (SqliteStore, PostgresStore):
        original = store.atomic

        async def atomic(self: Any, work: Any, _original: Any = original, **how: Any) -> Any:
            result = await _original(self, work, **how)
            hit()
            return result

        store.atomic = atomic  # type: ignore[method-assign]


def main() -> None:
    port, db = int(sys.argv[1]), sys.argv[2]
    spec = os.environ.get("FAULT_KILL", "")
    if spec:
        _install(spec)
    settings = EngineSettings(
        port=port,
        database_url=db,
        lease_seconds=1.0,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.1,
        call_timeout=10.0,
    )
    uvicorn.run(build_app(Engine(settings)), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
