"""An engine node of the partition test, run inside its own network namespace.

``python tests/apps/partition_node.py HOST PORT DB LEASE``: a whole engine (HTTP API,
worker, heartbeat, LISTEN) on the shared Postgres ``DB`` (reached through the namespace's
link), listening on ``HOST:PORT``, with ``LEASE``-second leases. Its log goes to stdout
with wall-clock times, warnings and up (what an operator sees): the test reads when the
node saw the database go and come back.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app


def main() -> None:
    host, port, db, lease = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    logging.basicConfig(
        stream=sys.stdout, level=logging.WARNING, format="%(created).3f %(name)s %(message)s"
    )
    settings = EngineSettings(
        host=host,
        port=port,
        database_url=db,
        lease_seconds=lease,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.1,
        db_pool_size=4,
        allow_public_bind=True,  # dev mode on the namespace's address: the test's own
    )
    uvicorn.run(build_app(Engine(settings)), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
