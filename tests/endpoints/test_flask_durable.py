"""What only Flask's durable endpoints do: ``stepline.flask.durable``.

What every framework does (through Flask's test client and behind werkzeug, with plain
``def`` and ``async def`` handlers) is in ``test_endpoint_contract.py``; the app is
``tests/apps/durable_flask.py``. Here: an ``async def`` handler on the endpoint's own
event loop, kept from one request to the next.
"""

from __future__ import annotations

import os
from pathlib import Path

import flask
import pytest

import stepline
import stepline.flask
from stepline.embedded import EmbeddedEngine


@pytest.fixture(autouse=True)
def _no_stepline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("STEPLINE_", "INNGEST_")):
            monkeypatch.delenv(name)


def test_an_async_handler_runs_on_a_private_loop(tmp_path: Path) -> None:
    client = stepline.Client("flask-async", is_production=False, environ={})
    app = flask.Flask("flask-async")
    engine = EmbeddedEngine(client, [], database=str(tmp_path / "a.db"), poll_interval=0.05)
    stepline.flask.serve(app, client, [], engine=engine)
    try:

        @app.post("/pay/<oid>")
        @stepline.flask.durable(client)
        async def pay(ctx: stepline.EndpointContext) -> dict[str, str]:
            charge = await ctx.step.run("charge", lambda: f"ch-{ctx.request.path_params['oid']}")
            return {"charge": charge}

        with app.test_client() as http:
            for oid in ("1", "2"):  # a second request reuses the loop and its connections
                answer = http.post(f"/pay/{oid}")
                assert answer.status_code == 200, answer.get_data(as_text=True)
                assert answer.get_json() == {"charge": f"ch-{oid}"}
    finally:
        engine.stop()
