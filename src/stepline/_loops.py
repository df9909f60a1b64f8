"""The event loop the engine runs on: uvloop when it is installed, else asyncio's own.

uvloop comes with the ``engine`` extra. The engine wakes its loop from other threads for
every run started and ended in process (``call_soon_threadsafe``) and waits on sockets
and timers all the time: on uvloop each of those costs less (a step-by-step run in the
embedded engine: 2-7% more steps/s, ``bench/README.md``). ``stepline dev|start`` and
the embedded engine's thread run their loop with ``run``; code the engine runs does not
depend on which loop it is (the engine's tests pass on both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["kind", "run"]


def _uvloop() -> Any:
    try:
        import uvloop
    except ImportError:  # not installed (no ``engine`` extra), or not on this platform
        return None
    return uvloop


def kind() -> str:
    """Which loop ``run`` runs: ``"uvloop"`` or ``"asyncio"``."""
    return "asyncio" if _uvloop() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on a uvloop loop when uvloop is installed."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
