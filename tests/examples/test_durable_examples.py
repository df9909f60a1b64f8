"""The durable-endpoint examples, each run as the one command its docstring gives."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests._support.processes import clean_env, free_port, spawned

pytestmark = [pytest.mark.process]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "durable_endpoints"


@pytest.mark.parametrize("script", ["fastapi_app.py", "flask_app.py", "django_app.py"])
def test_the_checkout_example(tmp_path: Path, script: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(PORT=str(port), STEPLINE_DATABASE_URL=str(tmp_path / "shop.db"))
    command = [sys.executable, str(EXAMPLES / script)]
    with (
        spawned(command, log=tmp_path / "app.log", env=env, cwd=tmp_path, up=f"{base}/api/runs/x",
                ready=lambda r: r.status_code == 404, what=script),
        httpx.Client(base_url=base, timeout=30) as http,
    ):  # fmt: skip
        key = {"idempotency-key": "cart-1"}
        done = http.post("/checkout", json={"cart": "cart-1", "items": 2}, headers=key)
        assert done.status_code == 200, done.text
        assert done.json()["cents"] == 2500
        assert done.json()["email"] == "sent"
        again = http.post("/checkout", json={"cart": "cart-1", "items": 2}, headers=key)
        assert again.json()["order"] == done.json()["order"]
        assert again.headers["x-stepline-run-id"] == done.headers["x-stepline-run-id"]
        assert http.post("/checkout", json={"cart": ""}).status_code == 422
        wrapped = http.post("/checkout", json={"cart": "cart-2", "items": 1, "gift_wrap": True})
        assert wrapped.status_code == 202, wrapped.text
        result = http.get(wrapped.headers["location"], params={"wait": "20"})
        assert result.status_code == 200, result.text
        assert result.json()["output"]["json"]["email"] == "sent"
