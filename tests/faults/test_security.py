"""Security promises not already pinned elsewhere (see SECURITY.md for the full map).

Covered elsewhere and not repeated: signature parsing, freshness and fallback at the unit
level (``tests/protocol/test_signing.py``), the SDK refusing unsigned or forged calls
(``tests/sdk/test_comm_signatures.py``), bearer checks on a few routes and the event key
(``tests/engine/test_api.py``), dashboard sign-in and sessions
(``tests/dashboard/test_auth.py``), ``start`` without keys and ``dev --host 0.0.0.0``
(``tests/engine/test_cli.py``, ``test_config.py``).

Here, end to end over real HTTP: every call a start-mode engine makes to an app is
signed with its current key (and the app's answers with the key that verified them); a
real engine request replayed after the freshness window, or re-signed for another body,
is refused; key rotation works in both directions through the fallback key, and a
foreign key fails cleanly; every route of the engine is closed without credentials
except a short public list; every body-taking endpoint answers 413 past its limit; the
logs of a ``stepline start`` process at debug level never hold a key, a key's hash or a
session; and ``dev`` refuses every non-loopback address it is given.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

import stepline
import stepline.asgi
from stepline._comm.handler import CommHandler
from stepline._comm.messages import CommRequest
from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings
from stepline.engine._config import EngineConfigError, resolve
from stepline.engine._http.api import build_app
from tests._support.clients import closing_client
from tests._support.logs import captured_logs
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests._support.recording import AppCalls
from tests._support.server_thread import AppServer

OLD = "signkey-prod-" + "0a1b" * 16
NEW = "signkey-prod-" + "2c3d" * 16
FOREIGN = "signkey-prod-" + "4e5f" * 16
EVENT_KEYS = ("sec-event-key-1", "sec-event-key-2")
DASHBOARD_KEY = "sec dashboard passphrase"


# -- apps and engines over HTTP ---------------------------------------------------------------


def _app(engine_url: str, key: str, fallback: str | None) -> tuple[stepline.Client, Any]:
    client = stepline.Client(
        app_id="sec",
        is_production=True,
        signing_key=key,
        signing_key_fallback=fallback,
        event_key=EVENT_KEYS[0],
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=False,
    )

    @client.function(id="two", trigger=stepline.TriggerEvent(event="sec/go"), retries=0)
    async def two(ctx: stepline.Context) -> list[int]:
        first = await ctx.step.run("one", lambda: 1)
        return [first, await ctx.step.run("two", lambda: 2)]

    return client, closing_client(stepline.asgi.serve(client, [two]), client)


def _production(db: str, keys: tuple[str, ...], **extra: Any) -> EngineSettings:
    return EngineSettings(
        mode="start",
        database_url=db,
        signing_keys=keys,
        event_keys=EVENT_KEYS,
        dashboard_keys=(DASHBOARD_KEY,),
        retry_scale=0.0,
        retry_jitter=0.0,
        poll_interval=0.05,
        **extra,
    )


@contextlib.contextmanager
def _deployment(
    db: str, engine_keys: tuple[str, ...], app_key: str, app_fallback: str | None
) -> Iterator[tuple[str, AppCalls, dict[str, str]]]:
    """A start-mode engine and a production app, both over HTTP on loopback."""
    engine = Engine(_production(db, engine_keys))
    with AppServer(build_app(engine), name="engine") as server:
        _client, app = _app(server.base, app_key, app_fallback)
        recorder = AppCalls(app)
        with AppServer(recorder, name="app") as app_server:
            auth = {"authorization": signing.bearer_token(engine_keys[0])}
            yield server.base, recorder, auth | {"x-app-url": f"{app_server.base}/api/inngest"}


def _sync_and_run(base: str, auth: dict[str, str]) -> tuple[httpx.Response, dict[str, Any] | None]:
    """Sync the app (it registers itself with its key), send an event, await the run."""
    headers = {"authorization": auth["authorization"]}
    synced = httpx.post(f"{base}/v1/apps/sync", json={"url": auth["x-app-url"]}, headers=headers)
    if synced.status_code != 200 or not synced.json()["data"]["ok"]:
        return synced, None
    sent = httpx.post(f"{base}/e/{EVENT_KEYS[1]}", json={"name": "sec/go"})
    assert sent.status_code == 200, sent.text
    event_id = sent.json()["ids"][0]

    def ended() -> dict[str, Any] | None:
        runs = httpx.get(f"{base}/v1/events/{event_id}/runs", headers=headers).json()["data"]
        done = [r for r in runs if r["status"] in ("Completed", "Failed")]
        return done[0] if done else None

    return synced, wait_until(ended, message="the run to end")


def _posts(recorder: AppCalls) -> list[dict[str, Any]]:
    return [c for c in recorder.calls if c["method"] == "POST"]


# -- signing, freshness, rotation -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine_keys", "app_key", "app_fallback"),
    [
        pytest.param((NEW,), NEW, None, id="one key"),
        # the engine moved to NEW first; the app still uses OLD, NEW as its fallback
        pytest.param((NEW, OLD), OLD, NEW, id="engine rotated first"),
        # the app moved to NEW first; the engine still signs with OLD, NEW as fallback
        pytest.param((OLD, NEW), NEW, OLD, id="app rotated first"),
    ],
)
def test_every_call_is_signed_and_rotation_works_both_ways(
    tmp_path: Path, engine_keys: tuple[str, ...], app_key: str, app_fallback: str | None
) -> None:
    with _deployment(str(tmp_path / "e.db"), engine_keys, app_key, app_fallback) as (
        base,
        recorder,
        auth,
    ):
        synced, run = _sync_and_run(base, auth)
        assert synced.status_code == 200, synced.text
        assert synced.json()["data"]["ok"], synced.text
        assert run is not None
        assert run["status"] == "Completed", run
        assert run["output"] == [1, 2]
        posts = _posts(recorder)
        assert len(posts) == 3  # two steps, then the return
        for call in posts:
            header = call["headers"].get("x-inngest-signature")
            assert header, "an unsigned call reached the app"
            # signed with the engine's current key, fresh when it arrived
            assert signing.verify(call["body"], header, [engine_keys[0]], now=call["received"])
            assert call["status"] in (200, 206)
            signed_answer = call["answer_headers"]["x-inngest-signature"]
            assert signing.verify(call["answer"], signed_answer, [engine_keys[0]], now=time.time())


@pytest.mark.slow
def test_a_foreign_key_fails_cleanly_both_ways(tmp_path: Path) -> None:
    with _deployment(str(tmp_path / "e.db"), (NEW, OLD), FOREIGN, None) as (base, recorder, auth):
        synced, _run = _sync_and_run(base, auth)
        # the app's registration carries a bearer the engine does not know
        assert synced.status_code == 200
        assert synced.json()["data"]["ok"] is False
        assert "401" in synced.json()["data"]["error"]
        assert (
            httpx.get(
                f"{base}/v1/functions", headers={"authorization": auth["authorization"]}
            ).json()["data"]
            == []
        )
        # and the engine's signed call cannot be verified by the app
        engine = {"authorization": auth["authorization"]}
        body = {
            "appName": "sec",
            "url": auth["x-app-url"],
            "functions": [
                {
                    "id": "sec-two",
                    "triggers": [{"event": "sec/go"}],
                    "steps": {"step": {"id": "step", "runtime": {"url": auth["x-app-url"]}}},
                    "retries": {"attempts": 3},
                }
            ],
        }
        assert httpx.post(f"{base}/fn/register", json=body, headers=engine).status_code == 200
        sent = httpx.post(f"{base}/e/{EVENT_KEYS[0]}", json={"name": "sec/go"}).json()["ids"][0]

        def ended() -> dict[str, Any] | None:
            runs = httpx.get(f"{base}/v1/events/{sent}/runs", headers=engine).json()["data"]
            return runs[0] if runs and runs[0]["status"] == "Failed" else None

        failed = wait_until(ended, message="the run to fail")
        posts = _posts(recorder)
        # refused as non-retriable: one attempt, not the four allowed
        assert [c["status"] for c in posts] == [401]
        assert "sig_verification_failed" in posts[0]["answer"].decode()
        assert failed["status"] == "Failed"


@pytest.mark.slow
def test_a_real_engine_call_replayed_late_or_reused_is_refused(tmp_path: Path) -> None:
    with _deployment(str(tmp_path / "e.db"), (NEW,), NEW, None) as (base, recorder, auth):
        _synced, run = _sync_and_run(base, auth)
        assert run is not None
        assert run["status"] == "Completed"
    first = _posts(recorder)[0]
    client, _app_unused = _app(base, NEW, None)

    functions = _app_functions(client)

    def replay(at: float, body: bytes | None = None) -> int:
        handler = CommHandler(
            client=client, functions=functions, framework="asgi", wall_clock=lambda: at
        )
        try:
            request = CommRequest.build(
                method="POST",
                url="http://app/api/inngest?fnId=sec-two&stepId=step",
                headers=first["headers"],
                body=first["body"] if body is None else body,
            )
            return handler.handle_sync(request).status
        finally:
            handler.close()

    # the signature's own time (whole seconds), not the moment the app received it: a
    # call signed at 12.9 s and received at 13.0 s is 301 s "from the future" at -300.1 s
    header = {k.lower(): v for k, v in first["headers"].items()}["x-inngest-signature"]
    sent = float(dict(part.split("=", 1) for part in header.split("&"))["t"])
    assert abs(sent - first["received"]) < 5
    assert replay(sent + 60) == 206  # inside the 5-minute window a replay is accepted
    assert replay(sent + 301) == 401  # stale
    assert replay(sent - 301) == 401  # from the future
    tampered = first["body"].replace(b'"attempt":0', b'"attempt":1')
    assert tampered != first["body"]
    assert replay(sent + 1, tampered) == 401  # the signature is for another body


def _app_functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="two", trigger=stepline.TriggerEvent(event="sec/go"), retries=0)
    async def two(ctx: stepline.Context) -> list[int]:
        first = await ctx.step.run("one", lambda: 1)
        return [first, await ctx.step.run("two", lambda: 2)]

    return [two]


# -- authentication of every route ---------------------------------------------------------


#: Routes open in start mode: health and readiness (probes of process managers), the
#: sign-in page and form, sign-out, the dashboard's static assets, the event API (its
#: key), and the signal hook (its token is the credential:
#: ``engine/test_signals.py::test_the_hook_takes_only_verified_tokens``). Connect's start
#: and flush take the bearer, as do its worker listings (``GET /v1/connect/workers``,
#: ``GET /v1/apps/{app_id}/workers``, walked below with every other route); its gateway
#: socket takes the tokens start hands out
#: (``connect/test_official_connect.py::test_start_mode_takes_the_right_key_only``).
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/dashboard/{name}"),
    ("POST", "/v1/signals/hooks/{token}"),
}


def _routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if isinstance(route, WebSocketRoute):  # Connect's gateway: its tokens, not a bearer
            assert route.path in ("/v0/connect/gateway", "/v0/connect")  # ours, Inngest's
            continue
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path))
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.mark.slow
def test_every_route_is_closed_without_credentials_in_start_mode(tmp_path: Path) -> None:
    engine = Engine(_production(str(tmp_path / "e.db"), (NEW, OLD)))
    app = build_app(engine)
    routes = _routes(app)
    assert len(routes) > 25
    assert {("GET", "/v1/connect/workers"), ("GET", "/v1/apps/{app_id}/workers")} <= set(routes)
    forged = [
        {},
        {"authorization": "Bearer undefined"},
        {"authorization": signing.bearer_token(FOREIGN)},
        {"authorization": f"Basic {NEW}"},
        {"cookie": "stepline_session=9999999999.abc.def"},
    ]
    with TestClient(app) as http:
        for method, path in routes:
            if (method, path) in PUBLIC:
                continue
            url = _concrete(path)
            for headers in forged:
                answer = http.request(method, url, headers=headers, content=b"{}")
                if path == "/e/{key}":
                    assert answer.status_code == 401, (method, path, headers)
                    continue
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert "error" in answer.json()
            if path != "/e/{key}":  # with the fallback key's bearer, the route opens
                opened = http.request(
                    method, url, headers={"authorization": signing.bearer_token(OLD)}, content=b"{}"
                )
                assert opened.status_code != 401, (method, path)
        for key in EVENT_KEYS:  # every configured event key works; nothing else
            assert http.post(f"/e/{key}", json={"name": "a/b"}).status_code == 200
        for key in (EVENT_KEYS[0].upper(), EVENT_KEYS[0] + " ", EVENT_KEYS[0][:-1], "x"):
            assert http.post(f"/e/{key}", json={"name": "a/b"}).status_code == 401


# -- size limits --------------------------------------------------------------------------------


BODY_ROUTES = {
    ("POST", "/e/{key}"),
    ("POST", "/invoke/{function_id:path}"),
    ("POST", "/fn/register"),
    ("POST", "/v1/checkpoint/{run_id}/async"),
    ("POST", "/v1/events"),
    ("POST", "/v1/functions/{function_id:path}/runs"),
    ("POST", "/v1/apps/sync"),
    ("POST", "/v1/runs/{run_id}/stream"),
    ("POST", "/v1/outbox/deliveries"),
    ("POST", "/v1/functions/{function_id:path}/inline"),
    ("POST", "/v1/functions/{function_id:path}/pause"),
    ("POST", "/v1/runs/{run_id}/inline/checkpoint"),
    ("POST", "/v1/runs/{run_id}/inline/answer"),
    ("POST", "/v1/runs/{run_id}/attributes"),
    ("POST", "/v1/runs/{run_id}/replay"),
    ("POST", "/v1/bulk/cancel"),
    ("POST", "/v1/bulk/replay"),
    ("POST", "/v0/gql"),
    ("POST", "/v1/runs/{run_id}/signals/{name}"),
    ("POST", "/v1/signals"),
    ("POST", "/v1/signals/hooks/{token}"),
    ("POST", "/v1/approvals/{approval_id}/approve"),
    ("POST", "/v1/approvals/{approval_id}/reject"),
    ("POST", "/v1/deploy-checks"),
    ("PUT", "/v1/views/{name}"),
    ("POST", "/login"),
    ("POST", "/v0/connect/start"),
    ("POST", "/v0/connect/flush"),
    ("POST", "/v0/connect/forward"),
}
NO_BODY_ROUTES = {
    ("POST", "/v1/runs/{run_id}/cancel"),
    ("POST", "/v1/runs/{run_id}/rerun"),
    ("POST", "/v1/bulk/{bulk_id}/cancel"),
    ("POST", "/v1/functions/{function_id:path}/resume"),
    ("POST", "/v1/events/{event_id}/replay"),
    ("POST", "/logout"),
}


@pytest.mark.slow
def test_every_body_taking_endpoint_answers_413_past_its_limit(tmp_path: Path) -> None:
    limit = 2048
    engine = Engine(_production(str(tmp_path / "e.db"), (NEW,), max_body_bytes=limit))
    app = build_app(engine)
    posts = [(m, p) for m, p in _routes(app) if m in ("POST", "PUT")]
    # every route that takes a body reads it through the capped reader; the others never
    # read it (Starlette buffers nothing unasked), so nothing there to limit
    assert set(posts) == BODY_ROUTES | NO_BODY_ROUTES
    auth = {"authorization": signing.bearer_token(NEW), "content-type": "application/json"}
    big = b'{"name": "a/b", "data": {"x": "' + b"y" * limit + b'"}}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: the running count must stop it
        for start in range(0, len(big), 256):
            yield big[start : start + 256]

    with TestClient(app) as http:
        for method, path in sorted(BODY_ROUTES - {("POST", "/login")}):
            url = _concrete(path).replace("/e/x", f"/e/{EVENT_KEYS[0]}")
            # the hook verifies the token in its path before it reads a byte: a forged one
            # is a 404 whatever the body (test_signals caps a real token's body at 413)
            expected = 404 if path == "/v1/signals/hooks/{token}" else 413
            for content in (big, streamed()):
                answer = http.request(method, url, content=content, headers=auth)
                assert answer.status_code == expected, (method, path, answer.text)
        form = http.post(
            "/login",
            content=b"key=" + b"k" * 9000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 413
    # the SDK's handler over HTTP, under the same kind of limit
    client, _app_unused = _app("http://127.0.0.1:1", NEW, None)
    handler = CommHandler(
        client=client, functions=_app_functions(client), framework="asgi", max_body_bytes=limit
    )
    with AppServer(stepline.asgi.ASGIApp(handler), name="sdk") as server:
        url = f"{server.base}/api/inngest?fnId=sec-two&stepId=step"
        assert httpx.post(url, content=big).status_code == 413
        assert httpx.put(url, content=big).status_code == 413
    handler.close()


# -- secrets and logs ----------------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.timeout(60)
def test_a_start_mode_engine_at_debug_level_never_logs_a_secret(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(
        STEPLINE_SIGNING_KEY=NEW,
        STEPLINE_SIGNING_KEY_FALLBACK=OLD,
        STEPLINE_EVENT_KEY=",".join(EVENT_KEYS),
        STEPLINE_DASHBOARD_KEY=DASHBOARD_KEY,
    )
    log = tmp_path / "engine.log"
    command = engine_command(
        "start", "--port", str(port), "--db", str(tmp_path / "e.db"),
        "--log-level", "debug", "--retry-scale", "0",
    )  # fmt: skip
    _client, app = _app(base, OLD, NEW)
    with (
        captured_logs("stepline", level=logging.DEBUG) as sdk_lines,
        AppServer(app, name="app") as app_server,
        spawned(command, log=log, env=env, up=f"{base}/health", what="the engine"),
    ):
        auth = {
            "authorization": signing.bearer_token(NEW),
            "x-app-url": f"{app_server.base}/api/inngest",
        }
        _synced, run = _sync_and_run(base, auth)
        assert run is not None
        assert run["status"] == "Completed"
        cookies = _exercise_refusals(base)
    text = log.read_text(errors="replace")
    assert "Stepline engine" in text, text[:2000]
    assert "DEBUG" in text, text[:2000]  # it did log, verbosely
    secrets = [
        *(variant for key in (NEW, OLD) for variant in _key_forms(key)),
        *EVENT_KEYS,
        *(signing.hash_event_key(k) for k in EVENT_KEYS),
        DASHBOARD_KEY,
        *cookies,
    ]
    sdk_text = "\n".join(sdk_lines)  # the app's own logs (this process), at debug level too
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) is in the engine's log"
        assert secret not in sdk_text, f"a secret ({secret[:6]}...) is in the SDK's log"


def _key_forms(key: str) -> list[str]:
    body = signing.strip_key_prefix(key)
    return [key, body, signing.hash_signing_key(key), signing.bearer_token(key).split()[1]]


def _exercise_refusals(base: str) -> list[str]:
    """Wrong keys everywhere, and a sign-in; returns the session cookie it got."""
    httpx.post(f"{base}/e/not-{EVENT_KEYS[0]}", json={"name": "a/b"})
    httpx.get(f"{base}/v1/runs", headers={"authorization": f"Bearer {OLD[:-2]}00"})
    httpx.post(f"{base}/login", data={"key": DASHBOARD_KEY + "!"})
    signed = httpx.post(f"{base}/login", data={"key": DASHBOARD_KEY})
    cookie = signed.cookies.get("stepline_session")
    assert cookie
    httpx.get(f"{base}/v1/runs", cookies={"stepline_session": cookie})
    return [cookie]


# -- dev mode binds to loopback only -------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "0:0:0:0:0:0:0:0", "192.168.1.10", "example.com", "127.0.0.1.nip.io"]
)
def test_dev_mode_refuses_every_non_loopback_address(host: str) -> None:
    with pytest.raises(EngineConfigError, match="--allow-public"):
        resolve(environ={}, host=host)
    assert resolve(environ={}, host=host, allow_public_bind=True).host == host
    assert (
        resolve(mode="start", environ={}, host=host, signing_key=NEW, event_keys=["k"]).host == host
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_dev_mode_binds_loopback_without_asking(host: str) -> None:
    assert resolve(environ={}, host=host).host == host
