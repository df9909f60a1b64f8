"""Only the engine registers ``connect://`` and ``inprocess://`` apps.

A registration over HTTP (``POST /fn/register``) naming such a URL is a 400: no trust
probe can vet a move to a URL that is not served over a network, so without the check an
HTTP registration could take a Connect app's functions away from its workers (dev mode,
or an app already at ``connect://``: same origin, no probe) or move an HTTP app to
``inprocess://`` in ``start`` mode (an in-process origin is never a move).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .harness import APP_ID, Node, Workers, node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEY = "signkey-prod-" + "5a6b" * 16


def _body(app_id: str, url: str, *locals_: str) -> dict[str, Any]:
    functions = [
        {
            "id": f"{app_id}-{local}",
            "name": local,
            "triggers": [{"event": f"{app_id}/{local}"}],
            "steps": {"step": {"id": "step", "runtime": {"url": f"{url}?fnId={app_id}-{local}"}}},
        }
        for local in locals_
    ]
    return {"appName": app_id, "url": url, "framework": "evil", "functions": functions}


def _app(engine: Node, app_id: str) -> dict[str, Any]:
    [app] = [a for a in engine.get("/v1/apps")["data"] if a["app_id"] == app_id]
    return app


@pytest.mark.process
def test_an_http_registration_cannot_take_a_connect_apps_calls(
    stack: tuple[Node, Workers],
) -> None:
    engine, found = stack
    url = f"connect://{APP_ID}/v0/connect"
    # the same origin as the workers' (no move to vet), with one function left, elsewhere
    attack = _body(APP_ID, url, "steps")
    attack["functions"][0]["steps"]["step"]["runtime"]["url"] = "http://127.0.0.1:9/evil"
    for body in (attack, _body(APP_ID, url)):
        answer = engine.http.post("/fn/register", json=body)
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]
        assert f"cannot name the URL {url}" in message, message
        assert "gateway" in message, message
    assert _app(engine, APP_ID)["functions"] == 10, "the workers' functions are all kept"
    run = engine.run("steps", {"n": 2})
    assert (run["status"], run["output"]) == ("Completed", 20), "its calls still go to w1"
    assert found.ran("steps.one")[-1] == "w1"


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("inprocess://victim-app/api", "inprocess"),
        ("connect://victim-app/v0/connect", "connect"),
        ("CONNECT://victim-app/v0/connect", "connect"),
    ],
)
def test_start_mode_refuses_an_http_app_moved_to_an_engine_only_url(
    tmp_path: Path, url: str, scheme: str
) -> None:
    production: dict[str, Any] = {"mode": "start", "signing_keys": (KEY,)}
    with node(str(tmp_path / "e.db"), **production) as engine:
        home = "http://127.0.0.1:9/api/inngest"
        first = engine.http.post("/fn/register", json=_body("victim-app", home, "f"))
        assert first.status_code == 200, first.text
        answer = engine.http.post("/fn/register", json=_body("victim-app", url, "f"))
        assert answer.status_code == 400, answer.text
        assert f"{scheme}:// URLs are not served over HTTP" in answer.json()["error"]
        # a function's URL alone is refused too
        sneaky = _body("victim-app", home, "f")
        sneaky["functions"][0]["steps"]["step"]["runtime"]["url"] = f"{url}?fnId=victim-app-f"
        assert engine.http.post("/fn/register", json=sneaky).status_code == 400
        assert _app(engine, "victim-app")["url"] == home, "the app stays where it was"
        [function] = engine.get("/v1/functions")["data"]
        assert home in str(function), function
