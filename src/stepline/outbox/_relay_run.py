"""Running a relay in a process: ``stepline relay`` and ``manage.py stepline relay``.

``run_forever`` wires the parts: the outbox's database, a ``HttpDeliverer`` to the engine, a
LISTEN thread on Postgres, an optional ``/metrics`` server, and SIGTERM/SIGINT to stop
after the batch in flight.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from stepline.outbox import _relay, _relay_db, _relay_deliver

__all__ = ["metrics_server", "run_forever"]

logger = logging.getLogger("stepline.outbox.relay")


@contextlib.contextmanager
def metrics_server(
    stats: _relay.RelayStats, port: int | None, host: str = "127.0.0.1"
) -> Iterator[int | None]:
    """Serve ``GET /metrics`` (Prometheus text) on ``port`` while open; yields the port."""
    if port is None:
        yield None
        return

    class MetricsHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = stats.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, name="stepline-relay-metrics")
    thread.daemon = True
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def run_forever(
    db: _relay_db.OutboxDb,
    deliverer: _relay_deliver.HttpDeliverer,
    settings: _relay.RelaySettings,
    *,
    listen: Callable[[], Any] | None = None,
    metrics_port: int | None = None,
) -> int:
    """Relay until SIGTERM or SIGINT; returns the exit code (0).

    Args:
        db: the outbox's database.
        deliverer: posts rows to the engine.
        settings: how the relay works.
        listen: opens a Postgres connection to LISTEN on (wakes the relay at each
            writer's commit); None elsewhere.
        metrics_port: serve ``/metrics`` on this port (loopback) if given.
    """
    relay = _relay.Relay(db, deliverer.deliver, settings, deliver_batch=deliverer.deliver_batch)
    stop = threading.Event()

    def stopping(signum: int, frame: Any) -> None:
        stop.set()
        relay.stop()

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if listen is not None:
            _relay.listen(listen, relay, stop)
        with metrics_server(relay.stats, metrics_port) as port:
            where = f"; metrics on http://127.0.0.1:{port}/metrics" if port else ""
            print(f"stepline relay: relaying to {deliverer.base}{where}", flush=True)
            relay.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop.set()
        relay.close()
        deliverer.close()
    return 0
