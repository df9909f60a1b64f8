"""What only FastAPI's durable endpoints do: ``stepline.fastapi.durable``.

What every framework does (through FastAPI's ``TestClient`` and behind uvicorn) is in
``test_endpoint_contract.py``; the app is ``tests/apps/durable_fastapi.py``.
"""

from __future__ import annotations

import stepline.fastapi


def test_the_router_pins_durable() -> None:
    assert stepline.fastapi.__all__ == [
        "ENGINE_PATH",
        "ClientDep",
        "durable",
        "get_client",
        "lifespan",
        "runs_router",
        "serve",
    ]
