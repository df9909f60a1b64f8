"""Production mode: the dashboard and the REST API refuse until signed in.

The HTTP-level rules through Starlette's TestClient, then the sign-in form in Chromium.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from stepline._protocol.signing import hash_signing_key
from stepline.engine import Engine, EngineSettings
from stepline.engine._http import auth
from stepline.engine._http.api import build_app
from stepline.engine._http.dashboard import COOKIE, CSRF_HEADER
from tests._support.browser import Page
from tests._support.server_thread import ServerThread

SIGNING_KEY = "signkey-prod-" + "5eed" * 16
DASHBOARD_KEY = "correct horse battery staple"
CSRF = {CSRF_HEADER: "1"}


def production(db: Path, **extra: Any) -> EngineSettings:
    return EngineSettings(
        mode="start",
        database_url=str(db),
        signing_keys=(SIGNING_KEY,),
        event_keys=("ev-key",),
        dashboard_keys=(DASHBOARD_KEY,),
        poll_interval=0.05,
        **extra,
    )


@contextlib.contextmanager
def client(db: Path, **extra: Any) -> Iterator[TestClient]:
    with TestClient(build_app(Engine(production(db, **extra)))) as opened:
        yield opened


def sign_in(http: TestClient, key: str) -> httpx.Response:
    return http.post("/login", data={"key": key}, follow_redirects=False)


def test_everything_but_the_sign_in_form_is_refused_without_a_session(tmp_path: Path) -> None:
    with client(tmp_path / "e.db") as http:
        home = http.get("/")
        assert home.status_code == 200
        assert 'action="login"' in home.text  # the sign-in form, relative
        assert "dashboard/app.js" not in home.text
        assert "default-src 'none'" in home.headers["content-security-policy"]
        # assets are public (nothing secret in them); data is not
        assert http.get("/dashboard/app.css").status_code == 200
        for path in ("/v1/runs", "/v1/events", "/v1/functions", "/v1/apps", "/v1/runs/01X"):
            assert http.get(path).status_code == 401, path
        assert http.post("/v1/apps/sync", headers=CSRF).status_code == 401
        assert http.post("/v1/events", json={"name": "a/b"}, headers=CSRF).status_code == 401


def test_wrong_keys_are_refused(tmp_path: Path) -> None:
    with client(tmp_path / "e.db") as http:
        for key in ("", "nope", "signkey-prod-" + "00" * 32, DASHBOARD_KEY.upper()):
            refused = sign_in(http, key)
            assert refused.status_code == 303, key
            assert refused.headers["location"] == "./?refused"
            assert "set-cookie" not in refused.headers
        assert "That key was not accepted." in http.get("/?refused").text
        assert "That key was not accepted." not in http.get("/").text
        assert http.get("/v1/runs").status_code == 401


@pytest.mark.parametrize(
    "key",
    [SIGNING_KEY, hash_signing_key(SIGNING_KEY), DASHBOARD_KEY],
    ids=["signing-key", "its-hash", "dashboard-key"],
)
def test_signing_in_sets_a_strict_session_cookie_the_api_accepts(tmp_path: Path, key: str) -> None:
    with client(tmp_path / "e.db") as http:
        answer = sign_in(http, key)
        assert answer.status_code == 303
        assert answer.headers["location"] == "./"  # relative: works under a mount prefix
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for flag in ("HttpOnly", "SameSite=Strict", f"Max-Age={auth.SESSION_SECONDS}"):
            assert flag in cookie
        assert "Path=" not in cookie  # scoped to the directory the dashboard is served from
        assert "Secure" not in cookie  # plain http here; https gets Secure (below)

        shell = http.get("/")
        assert 'src="dashboard/app.js"' in shell.text
        assert 'action="logout"' in shell.text
        assert http.get("/v1/runs").status_code == 200
        assert http.get("/v1/functions").status_code == 200
        # changing state with a cookie needs the header a cross-site form cannot send
        assert http.post("/v1/runs/01NOPE/cancel").status_code == 401
        assert http.post("/v1/runs/01NOPE/cancel", headers=CSRF).status_code == 404
        sent = http.post("/v1/events", json={"name": "a/b", "data": {}}, headers=CSRF)
        assert sent.status_code == 200
        assert len(sent.json()["data"]["ids"]) == 1

        out = http.post("/logout", follow_redirects=False)
        assert out.status_code == 303
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert http.get("/v1/runs").status_code == 401


def test_behind_https_the_cookie_is_secure(tmp_path: Path) -> None:
    with client(tmp_path / "e.db") as http:
        answer = http.post(
            "/login",
            data={"key": SIGNING_KEY},
            headers={"x-forwarded-proto": "https"},
            follow_redirects=False,
        )
        assert "; Secure" in answer.headers["set-cookie"]


def test_forged_expired_and_foreign_sessions_are_refused(tmp_path: Path) -> None:
    settings = production(tmp_path / "e.db")
    now = time.time()
    good = auth.new_session(settings, now=now, nonce="ab12")
    expires, nonce, name, mac = good.split(".")
    other = EngineSettings(mode="start", signing_keys=("signkey-prod-" + "77" * 32,))
    cases = {
        "tampered expiry": f"{int(expires) + 60}.{nonce}.{name}.{mac}",
        "tampered mac": f"{expires}.{nonce}.{name}.{'0' * len(mac)}",
        # the name is under the MAC: a session cannot be relabelled as someone else's
        "tampered name": f"{expires}.{nonce}.{b'dashboard'.hex()}.{mac}",
        "no name": f"{expires}.{nonce}.{mac}",
        "expired": auth.new_session(settings, now=now - auth.SESSION_SECONDS - 1, nonce="ab"),
        "too far ahead": auth.new_session(settings, now=now + 3600, nonce="ab"),
        "another engine's key": auth.new_session(other, now=now, nonce="ab"),
        "garbage": "not-a-session",
    }
    assert auth.session_ok(good, settings, now=now)
    with client(tmp_path / "e.db") as http:
        http.cookies.set(COOKIE, good)
        assert http.get("/v1/runs").status_code == 200
        for name, token in cases.items():
            assert not auth.session_ok(token, settings, now=now), name
            http.cookies.set(COOKIE, token)
            assert http.get("/v1/runs").status_code == 401, name
            assert 'action="login"' in http.get("/").text, name


def test_a_session_survives_key_rotation_but_not_a_new_dashboard_key(tmp_path: Path) -> None:
    settings = production(tmp_path / "e.db")
    token = auth.new_session(settings, now=time.time(), nonce="ab")
    rotated = EngineSettings(
        mode="start",
        signing_keys=("signkey-prod-" + "99" * 32, SIGNING_KEY),  # old key is the fallback
        dashboard_keys=(DASHBOARD_KEY,),
    )
    assert auth.session_ok(token, rotated, now=time.time())
    revoked = EngineSettings(
        mode="start", signing_keys=(SIGNING_KEY,), dashboard_keys=("a brand new dashboard key",)
    )
    assert not auth.session_ok(token, revoked, now=time.time())


def test_dev_mode_is_open_without_a_sign_in(tmp_path: Path) -> None:
    engine = Engine(EngineSettings(database_url=str(tmp_path / "e.db")))
    with TestClient(build_app(engine), base_url="http://127.0.0.1:8288") as http:
        shell = http.get("/")
        assert 'src="dashboard/app.js"' in shell.text
        assert 'action="logout"' not in shell.text
        assert http.get("/v1/runs").status_code == 200
        # a form from another site is refused (415); the dashboard's own header passes
        assert http.post("/login", data={"key": "x"}).status_code == 415
        csrf = {"x-stepline-csrf": "1"}
        assert (
            http.post("/login", data={"key": "x"}, headers=csrf, follow_redirects=False).status_code
            == 303
        )


def test_assets_are_cached_by_etag_and_unknown_ones_are_404(tmp_path: Path) -> None:
    engine = Engine(EngineSettings(database_url=str(tmp_path / "e.db")))
    with TestClient(build_app(engine), base_url="http://127.0.0.1:8288") as http:
        script = http.get("/dashboard/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        again = http.get("/dashboard/app.js", headers={"if-none-match": script.headers["etag"]})
        assert again.status_code == 304
        for name in ("nope.js", "index.html", "..%2F_api.py"):
            assert http.get(f"/dashboard/{name}").status_code == 404, name


# -- in the browser -------------------------------------------------------------------------


@pytest.mark.browser
def test_sign_in_page_in_the_browser(tmp_path: Path, tab: Page) -> None:
    server = ServerThread("engine-prod")
    server.start(build_app(Engine(production(tmp_path / "e.db"))))
    try:
        page = tab.page
        page.goto(f"{server.url}/#/runs")
        page.wait_for_selector("form.login")
        tab.screenshot("login")
        page.fill("input[name=key]", "wrong")
        page.click("button[type=submit]")
        page.wait_for_selector("text=That key was not accepted.")
        assert page.locator("form.login").is_visible()

        page.fill("input[name=key]", DASHBOARD_KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("table.runs, p.empty")
        assert page.locator("h1").inner_text() == "Runs"
        cookies = tab.context.cookies()
        [session] = [c for c in cookies if c["name"] == COOKIE]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # not readable by scripts

        # the session ends under an open page: the next live refresh says so
        tab.expected.append("401")  # Chromium logs the refused request
        tab.context.clear_cookies()
        page.wait_for_selector("#banner:has-text('Your session has ended')")
        page.click("#banner a")
        page.fill("input[name=key]", SIGNING_KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("table.runs, p.empty")

        page.click("form.logout button")
        page.wait_for_selector("form.login")
        assert not [c for c in tab.context.cookies() if c["name"] == COOKIE]
    finally:
        server.stop()
