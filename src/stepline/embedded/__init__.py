"""The engine inside your web process: durable functions with no second process.

``EmbeddedEngine`` runs a Stepline engine on a background thread (its own event loop) on a
SQLite file, serves the client's functions to it in-process, and routes the client's
engine traffic (``send``, ``start``, ``get_run``...) to it without HTTP. Several worker
processes (gunicorn, uvicorn ``--workers``) may share the file: they share the queue, and
each run executes once. The engine starts on first use, or when the process serves (the
adapters start it at the first request or at their lifespan's startup; ``start_all()`` from
a server hook such as gunicorn's ``post_worker_init``), and again in a forked child. Under a
pre-fork server (gunicorn, uwsgi's master), a process that has not served never leases
work: a client's use there records events and starts for the workers to run, so
``gunicorn --preload`` is safe.

The engine's REST API and dashboard can be mounted under the web app (``asgi_app`` /
``wsgi_app``; the framework adapters' ``serve(..., engine="embedded")`` does it). They are
open to whoever reaches them, so they are mounted only for a dev-mode client unless you
pass ``expose_api=True``.

The package: ``_lifecycle`` (``EmbeddedEngine``: thread, loop, start/stop, fork and exit;
it owns the three parts below), ``_routing`` (the client's requests to the engine's loop),
``_direct`` (the client's starts and run reads, answered without the ASGI app), ``_mounts``
(the ASGI/WSGI proxy), ``_announce`` (the dashboard's URL, logged once), ``_options`` (the
engine settings it is given, checked) and ``_prefork`` (may this process lease, or is it
perhaps a pre-fork master).
"""

from __future__ import annotations

from stepline.embedded._lifecycle import DEFAULT_DATABASE as DEFAULT_DATABASE
from stepline.embedded._lifecycle import EmbeddedEngine as EmbeddedEngine
from stepline.embedded._lifecycle import start_all as start_all
from stepline.embedded._routing import ORIGIN as ORIGIN

__all__ = ["ORIGIN", "EmbeddedEngine", "start_all"]
