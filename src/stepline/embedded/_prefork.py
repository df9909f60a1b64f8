"""Pre-fork servers: may this process lease work, or could it be a master that forks workers?

gunicorn (``--preload``) and uwsgi (``--master`` without ``--lazy-apps``) import the app in
a master process and fork the workers from it. An engine leasing work there would run
steps in the master, and go on doing so beside its workers. A gunicorn master cannot be
told from a worker that imported the app itself (no ``--preload``): both imported gunicorn
and neither was forked since. So the rule, under a pre-fork server: a process leases only
once it serves (an adapter saw a request or ran its lifespan, or the server's worker hook
called ``start_all()``); a uwsgi worker says so by its id. Until then a client's call runs
the engine without its worker, for that call only: events and starts are recorded, the
workers run them, and no engine thread is left behind for the fork.

Process state, kept here only: ``serving`` is set by the adapters' hooks and cleared in a
forked child, which must serve to lease in its turn.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["forked", "held_back", "mark_serving", "server"]


class _Process:
    serving = False


def server() -> str | None:
    """The pre-fork server this process may be the master of: ``gunicorn``, ``uwsgi``, None.

    A uwsgi worker is none (its ``worker_id()`` is not 0); a gunicorn process may be either.
    """
    worker_id = getattr(_uwsgi(), "worker_id", None)
    if callable(worker_id):
        return "uwsgi" if worker_id() == 0 else None
    if "gunicorn.arbiter" in sys.modules:
        return "gunicorn"
    return None


def _uwsgi() -> object:
    """uwsgi's embedded module, importable only inside uwsgi (asked at an engine's start)."""
    found = sys.modules.get("uwsgi")
    if found is None:
        try:
            found = importlib.import_module("uwsgi")
        except ImportError:
            return None
    return found


def held_back() -> str | None:
    """The server that keeps this process from leasing (it has not served yet), else None."""
    return None if _Process.serving else server()


def mark_serving() -> None:
    """This process serves requests: its engines may lease work."""
    _Process.serving = True


def forked() -> None:
    """In a forked child: it serves once it says so, not because its parent did."""
    _Process.serving = False
