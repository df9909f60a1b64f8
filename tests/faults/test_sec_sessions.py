"""A dashboard session reaches the management routes only, never the SDK's and workers'.

The dashboard key is typed by people (16 characters is what the review signed in
with); the signing key is the app's secret. Against a start-mode engine:

* a session cannot open a Connect worker (``/v0/connect/start``), register an app
  (``/fn/register``), or answer for an app (checkpoints, inline runs): 401;
* a session may sync apps from the dashboard, but its sync never vouches for a move: the
  engine's PUT carries no ``deployId``, so an app that would move to the URL the session
  typed must answer the trust probe first; the signing key's sync still vouches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from stepline._connect import proto
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._http.dashboard import COOKIE, CSRF_HEADER
from tests._support.server_thread import AppServer

from .test_sec_registration import (
    AUTH,
    EVENT_KEY,
    KEY,
    _apps,
    _body,
    _localhost,
    _serve,
    _sync,
)

pytestmark = pytest.mark.timeout(120)

DASHBOARD_KEY = "sixteen-char-key"


def _settings(db: Path) -> EngineSettings:
    return EngineSettings(
        mode="start",
        database_url=str(db),
        signing_keys=(KEY,),
        event_keys=(EVENT_KEY,),
        dashboard_keys=(DASHBOARD_KEY,),
        retry_scale=0.0,
        retry_jitter=0.0,
        poll_interval=0.05,
    )


def _session_headers(session: str) -> dict[str, str]:
    """What the dashboard's page sends: the cookie, the CSRF header, a same-origin fetch."""
    return {"cookie": f"{COOKIE}={session}", CSRF_HEADER: "1", "sec-fetch-site": "same-origin"}


def _sign_in(post: Callable[..., httpx.Response], base: str = "") -> str:
    answer = post(f"{base}/login", data={"key": DASHBOARD_KEY}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return str(answer.cookies[COOKIE])


@contextlib.contextmanager
def _in_process(db: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with TestClient(build_app(Engine(_settings(db)))) as http:
        session = _sign_in(http.post)
        http.cookies.clear()
        yield http, _session_headers(session)


def test_a_session_cannot_start_a_connect_worker(tmp_path: Path) -> None:
    with _in_process(tmp_path / "e.db") as (http, session):
        start = proto.encode("StartRequest", {"exclude_gateways": []})
        answer = http.post(
            "/v0/connect/start",
            content=start,
            headers={**session, "content-type": "application/protobuf"},
        )
        # with tokens, its socket would register app "bank" at connect://bank, take the
        # app's calls (their event data) and answer them
        assert answer.status_code == 401, answer.text
        assert "a dashboard session does not reach it" in answer.json()["error"]
        keyed = http.post(
            "/v0/connect/start",
            content=start,
            headers={**AUTH, "content-type": "application/protobuf"},
        )
        assert keyed.status_code == 200, keyed.text


def test_a_session_cannot_register_or_answer_for_an_app(tmp_path: Path) -> None:
    with _in_process(tmp_path / "e.db") as (http, session):
        bank = _body("http://127.0.0.1:9/api/inngest", app_id="bank")
        assert http.post("/fn/register", json=bank, headers=session).status_code == 401
        assert http.get("/v1/apps", headers=session).json()["data"] == []
        for path in (
            "/v1/checkpoint/01RUN/async",
            "/v1/functions/bank-one/inline",
            "/v1/runs/01RUN/inline/checkpoint",
            "/v1/runs/01RUN/inline/answer",
            "/v0/connect/flush",
        ):
            assert http.post(path, json={}, headers=session).status_code == 401, path
        # what the dashboard does still works with the session
        assert http.get("/v1/runs", headers=session).status_code == 200
        assert http.post("/v1/apps/sync", headers=session).status_code == 200


@pytest.mark.slow
def test_a_sessions_sync_never_vouches_for_a_move(tmp_path: Path) -> None:
    with AppServer(build_app(Engine(_settings(tmp_path / "e.db"))), name="engine") as engine:
        base = engine.base
        session = _session_headers(_sign_in(httpx.post, base))
        recorder = _serve(base)
        with AppServer(recorder, name="victim") as app:
            url = f"{app.base}/api/inngest"
            assert _sync(base, url)["ok"] is True  # the operator's sync, with the key
            [keyed] = recorder.of("PUT")
            assert keyed["query"]["deployId"]  # the key's sync vouches for its URL

            # the session names another origin: the engine's PUT vouches for nothing
            elsewhere = _localhost(url)
            answer = httpx.post(
                f"{base}/v1/apps/sync", json={"url": elsewhere}, headers=session, timeout=60
            )
            assert answer.status_code == 200, answer.text
            put = recorder.of("PUT")[-1]
            assert "deployId" not in put["query"], put["query"]
            # the app moved only because the new URL answered the signed trust probe
            assert len(recorder.of("POST", probe="trust")) == 1
            assert _apps(base) == {"victim": elsewhere}

            # re-syncing every app from the dashboard: no deployId either
            answer = httpx.post(f"{base}/v1/apps/sync", headers=session, timeout=60)
            assert answer.status_code == 200, answer.text
            assert all("deployId" not in c["query"] for c in recorder.of("PUT")[1:])
