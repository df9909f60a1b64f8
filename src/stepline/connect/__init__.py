"""Connect: serve an app's functions over one outbound WebSocket to the engine.

With ``serve()`` the engine calls your app over HTTP; with a Connect worker your process
calls the engine (``POST /v0/connect/start``, then a WebSocket) and runs the calls the
engine sends over it: nothing listens on the worker's side, and a step may run as long as
the worker keeps extending its lease. See docs/connect.md.

::

    client = stepline.Client("orders")  # its engine, key and mode as for serve()

    @client.function(trigger=stepline.TriggerEvent("orders/paid"))
    async def ship(ctx: stepline.Context) -> str: ...

    stepline.connect.Worker(client, [ship]).run()  # SIGTERM/SIGINT: drain, then return

From a shell: ``python -m stepline.connect myapp.jobs:client`` (or ``stepline connect``)
serves every function of ``client``'s app defined in ``myapp.jobs``; Django:
``python manage.py stepline_connect``. Needs the ``websockets`` package
(``pip install 'stepline[connect]'``).
"""

from __future__ import annotations

from stepline._connect.cli import functions_of as functions_of
from stepline._connect.cli import main as main
from stepline._connect.worker import ConnectError as ConnectError
from stepline._connect.worker import Worker as Worker

__all__ = ["ConnectError", "Worker", "functions_of", "main"]
