"""An engine process with test-friendly settings.

``python tests/apps/engine_server.py PORT DB [LEASE]``.

Short leases let a restarted engine take over a killed one's jobs within a second.
"""

from __future__ import annotations

import sys

import uvicorn

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app


def main() -> None:
    port, db = int(sys.argv[1]), sys.argv[2]
    lease = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    settings = EngineSettings(
        port=port,
        database_url=db,
        lease_seconds=lease,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.1,
    )
    uvicorn.run(build_app(Engine(settings)), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
