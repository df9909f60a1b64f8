"""Durable endpoints against an attacker: what the contract does not check per framework.

Over every framework, ``test_endpoint_contract.py`` checks that a key is the caller's
(the framework's login with and without a ``caller`` hook, ``authorize``'s principal),
that credentials are not stored with the run, and that cross-site form posts reach no
handler. Here: a ``caller`` hook answering something that names no one, and which names
are taken for credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import pytest

import stepline
import stepline.fastapi
from stepline._endpoints import redaction
from stepline.embedded import EmbeddedEngine


def test_a_caller_hook_answering_something_else_is_a_config_error(tmp_path: Path) -> None:
    client = stepline.Client("sec", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    def caller(request: Any) -> Any:
        return 42  # names no one: neither a str, a Principal nor None

    @app.post("/note")
    @stepline.fastapi.durable(client, caller=caller)
    async def note(ctx: stepline.EndpointContext) -> str:
        return "never"

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    stepline.fastapi.serve(app, client, [], engine=engine)
    try:
        with (
            fastapi.testclient.TestClient(app, base_url="http://localhost") as http,
            pytest.raises(stepline.ConfigError, match="caller hook returned int"),
        ):
            http.post("/note", json={}, headers={"authorization": "Bearer tok-ada"})
        assert client.list_runs_sync(function=note.endpoint.function)[0] == []  # none started
    finally:
        engine.stop()


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("x-forwarded-access-token", True),
        ("cf-access-jwt-assertion", True),
        ("apikey", True),
        ("X-Amz-Signature", True),
        ("sig", True),
        ("code", True),
        ("client_secret", True),
        ("password", True),
        ("x-csrftoken", True),
        ("page", False),
        ("sort", False),
        ("user-agent", False),
        ("decoder", False),
    ],
)
def test_which_names_look_like_credentials(name: str, secret: bool) -> None:
    assert redaction.looks_secret(name) is secret
