"""gunicorn's configuration for ``test_process_managers``: each worker starts its engine.

``post_worker_init`` runs in every worker once the app is loaded, before any request:
the worker runs its embedded engine with no request at all (``-c`` this file).
"""

from __future__ import annotations

from typing import Any

import stepline.embedded


def post_worker_init(worker: Any) -> None:
    stepline.embedded.start_all()
