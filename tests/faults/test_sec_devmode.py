"""Dev mode against web pages: no cross-site writes, no DNS rebinding.

``stepline dev`` has no sign-in, so the developer's own browser is the way in for any page
they open. A page may send a "simple" cross-site ``POST`` (``text/plain``, a form, no
content type) without asking first; and by DNS rebinding it may point a name it controls
at 127.0.0.1 and become same-origin with the engine, though the browser still sends its
own name in ``Host``. Here, against a real ``stepline dev`` process: such requests are
refused and change nothing, ``--allow-public`` answers any ``Host`` (still refusing
foreign origins and simple requests), and the SDK's sync, event sends, run management
and the dashboard's requests still work. The embedded engine's mounts (ASGI and WSGI, what
the framework adapters and the Django mount use) are guarded the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import werkzeug.test

import stepline
import stepline.asgi
from stepline._comm import app_sync
from stepline._comm.handler import CommHandler
from stepline.embedded import EmbeddedEngine
from tests._support.clients import closing_client
from tests._support.engines import FAST
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests._support.server_thread import AppServer

EVIL = "http://evil.example"


@contextlib.contextmanager
def dev_engine(tmp_path: Path, *extra: str) -> Iterator[tuple[str, Path]]:
    """A real ``stepline dev`` process; yields its base URL and its log file."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "engine.log"
    command = engine_command(
        "dev", "--port", str(port), "--db", str(tmp_path / "e.db"), "--retry-scale", "0", *extra
    )
    with spawned(command, log=log, env=clean_env(), up=f"{base}/health", what="stepline dev"):
        yield base, log


def _app(engine_url: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(
        app_id="victim",
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
    )

    @client.function(id="hello", trigger=stepline.TriggerEvent(event="dev/go"), retries=0)
    async def hello(ctx: stepline.Context) -> str:
        return await ctx.step.run("hi", lambda: f"hi {ctx.event.data.get('who')}")

    @client.function(id="parked", trigger=stepline.TriggerEvent(event="dev/park"), retries=0)
    async def parked(ctx: stepline.Context) -> None:
        await ctx.step.sleep("long", "1h")

    return client, [hello, parked]


def _forged_registration(url: str) -> bytes:
    """What a page would POST to /fn/register: a valid registration pointing at ``url``."""
    client, functions = _app("http://127.0.0.1:1")
    handler = CommHandler(client=client, functions=functions, framework="asgi")
    try:
        return json.dumps(app_sync.register_payload(handler.endpoint, url)).encode()
    finally:
        handler.close()


def _error(answer: httpx.Response) -> str:
    body = answer.json()
    assert isinstance(body, dict), answer.text
    assert isinstance(body.get("error"), str), answer.text
    return str(body["error"])


def _no_cors(answer: httpx.Response) -> None:
    granted = [h for h in answer.headers if h.lower().startswith("access-control-")]
    assert not granted, f"the engine granted CORS: {granted}"


# -- a real stepline dev -----------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.timeout(90)
def test_a_web_page_can_neither_write_cross_site_nor_rebind_to_stepline_dev(
    tmp_path: Path,
) -> None:
    with dev_engine(tmp_path) as (base, log):
        port = base.rsplit(":", 1)[1]
        forged = _forged_registration("http://attacker.example/api/inngest")

        # a page on another site POSTs the registration as text/plain: refused, nothing kept
        cross = httpx.post(
            f"{base}/fn/register",
            content=forged,
            headers={"content-type": "text/plain;charset=UTF-8", "origin": EVIL},
        )
        assert cross.status_code == 403, cross.text
        assert "Origin 'http://evil.example' is not this engine's origin" in _error(cross)
        _no_cors(cross)
        # even JSON is refused from a foreign origin (a page that got a preflight elsewhere)
        json_cross = httpx.post(
            f"{base}/fn/register",
            content=forged,
            headers={"content-type": "application/json", "origin": EVIL},
        )
        assert json_cross.status_code == 403
        assert httpx.get(f"{base}/v1/runs", headers={"origin": "null"}).status_code == 403

        # without an Origin (a client that hides it), a simple request is still refused
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            simple = httpx.post(
                f"{base}/fn/register", content=forged, headers={"content-type": kind}
            )
            assert simple.status_code == 415, (kind, simple.text)
            assert "X-Stepline-Csrf: 1" in _error(simple)
        bare = httpx.post(f"{base}/v1/apps/sync")  # no body, no type: resync every app
        assert bare.status_code == 403
        assert "X-Stepline-Csrf" in _error(bare)
        sent = httpx.post(f"{base}/e/any", content=b'{"name": "dev/go"}')
        assert sent.status_code == 403

        # DNS rebinding: the page's own name in Host, whatever it sends
        # (an address is no name a page can rebind to; the unspecified 0.0.0.0 and [::]
        # reach this machine like 127.0.0.1 and are answered: test_official_gaps.py)
        for host in (f"rebind.example:{port}", "rebind.example", f"10.0.0.5:{port}", "[::2]"):
            rebound = httpx.get(f"{base}/v1/apps", headers={"host": host})
            assert rebound.status_code == 403, host
            assert "--allow-public" in _error(rebound)
        rebound_write = httpx.post(
            f"{base}/fn/register",
            content=forged,
            headers={"host": f"rebind.example:{port}", "content-type": "application/json"},
        )
        assert rebound_write.status_code == 403

        # nothing was registered, no event stored
        assert httpx.get(f"{base}/v1/apps").json()["data"] == []
        assert httpx.get(f"{base}/v1/events").json()["data"] == []

        # loopback names work, with or without a port
        for host in (f"localhost:{port}", f"app.localhost:{port}", f"127.0.0.2:{port}", "[::1]"):
            assert httpx.get(f"{base}/health", headers={"host": host}).status_code == 200, host

        # the dashboard (same origin, its header) reads and writes
        page = httpx.get(f"{base}/")
        assert page.status_code == 200
        assert 'src="dashboard/app.js"' in page.text
        _no_cors(page)
        dashboard = {"origin": base, "x-stepline-csrf": "1", "accept": "application/json"}
        stored = httpx.post(f"{base}/v1/events", json={"name": "dev/dash"}, headers=dashboard)
        assert stored.status_code == 200, stored.text
        # and curl-like clients with a JSON body, without an Origin
        assert httpx.post(f"{base}/e/any", json={"name": "dev/curl"}).status_code == 200

    text = log.read_text(errors="replace")
    assert "refused POST /fn/register: 403" in text
    assert "refused POST /fn/register: 415" in text
    assert "refused POST /e/{key}: 403" in text


@pytest.mark.process
@pytest.mark.timeout(90)
def test_allow_public_answers_any_host_but_still_refuses_web_pages(tmp_path: Path) -> None:
    with dev_engine(tmp_path, "--allow-public") as (base, _log):
        port = base.rsplit(":", 1)[1]
        lan = {"host": f"devbox.lan:{port}"}
        assert httpx.get(f"{base}/v1/apps", headers=lan).status_code == 200
        # its own origin under that name is fine; another origin or a simple request is not
        own = httpx.post(
            f"{base}/v1/events",
            json={"name": "dev/lan"},
            headers={**lan, "origin": f"http://devbox.lan:{port}"},
        )
        assert own.status_code == 200, own.text
        assert httpx.get(f"{base}/v1/apps", headers={**lan, "origin": EVIL}).status_code == 403
        plain = httpx.post(
            f"{base}/e/any", content=b'{"name": "x"}', headers={**lan, "content-type": "text/plain"}
        )
        assert plain.status_code == 415


@pytest.mark.process
@pytest.mark.timeout(120)
def test_the_sdk_syncs_sends_and_manages_runs_through_the_guard(tmp_path: Path) -> None:
    with dev_engine(tmp_path) as (base, _log):
        client, functions = _app(base)
        with AppServer(closing_client(stepline.asgi.serve(client, functions), client)) as app:
            url = f"{app.base}/api/inngest"
            # POST /v1/apps/sync as documented (JSON): the engine PUTs to the app, the app
            # registers with the SDK's headers through the guard
            synced = httpx.post(f"{base}/v1/apps/sync", json={"url": url})
            assert synced.status_code == 200, synced.text
            assert synced.json()["data"]["ok"], synced.text
            # the SDK's out-of-band sync (PUT to the app, which registers itself)
            assert httpx.put(url).status_code == 200

            [event_id] = client.send_sync(stepline.Event(name="dev/go", data={"who": "sdk"}))

            def ended() -> list[dict[str, Any]] | None:
                found = httpx.get(f"{base}/v1/events/{event_id}/runs").json()["data"]
                return found if found and found[0]["status"] == "Completed" else None

            [run] = wait_until(ended, message="the run")
            assert run["output"] == "hi sdk"

            handle = client.start_sync(functions[1], {})
            wait_until(
                lambda: [s for s in handle.steps() if s.status == "Waiting"], message="the sleep"
            )
            assert handle.cancel() == stepline.RunStatus.CANCELLED
            rerun = client.rerun_sync(run["run_id"])
            assert rerun.result(timeout=20) == "hi sdk"
            client.close()  # the pool of the sync calls above (the app closes its own)


# -- the embedded engine's mounts ----------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[stepline.Client, EmbeddedEngine]]:
    client, functions = _app("http://127.0.0.1:1")
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "emb.db"), **FAST)
    yield client, engine
    engine.stop()


def test_the_embedded_asgi_mount_refuses_web_pages_in_dev_mode(
    embedded: tuple[stepline.Client, EmbeddedEngine],
) -> None:
    client, engine = embedded
    mounted = engine.asgi_app()
    start = "/v1/functions/victim-hello/runs"
    body = b'{"data": {"who": "page"}}'

    async def scenario() -> None:
        local = httpx.ASGITransport(app=mounted, root_path="/stepline")
        async with httpx.AsyncClient(transport=local, base_url="http://localhost:8000") as http:
            cross = await http.post(
                f"/stepline{start}",
                content=body,
                headers={"content-type": "text/plain", "origin": EVIL},
            )
            assert cross.status_code == 403, cross.text
            assert "not this engine's origin" in _error(cross)
            plain = await http.post(
                f"/stepline{start}", content=body, headers={"content-type": "text/plain"}
            )
            assert plain.status_code == 415
            bare = await http.post("/stepline/v1/runs/whatever/cancel")
            assert bare.status_code == 403
            rebound = await http.get("/stepline/v1/runs", headers={"host": "rebind.example:8000"})
            assert rebound.status_code == 403
            assert "--allow-public" in _error(rebound)
            # nothing started
            assert (await http.get("/stepline/v1/runs")).json()["data"] == []
            # the app's own page (same origin, JSON or its header) works
            own = await http.post(
                f"/stepline{start}",
                content=body,
                headers={"content-type": "application/json", "origin": "http://localhost:8000"},
            )
            assert own.status_code == 201, own.text
            page = await http.get("/stepline/")
            assert page.status_code == 200

    asyncio.run(scenario())
    # the client's own traffic to its embedded engine is not a browser's: unaffected
    [event_id] = client.send_sync(stepline.Event(name="dev/go", data={"who": "client"}))
    assert event_id


def test_the_embedded_wsgi_mount_refuses_web_pages_in_dev_mode(
    embedded: tuple[stepline.Client, EmbeddedEngine],
) -> None:
    _client, engine = embedded
    http = werkzeug.test.Client(engine.wsgi_app())
    start = "/v1/functions/victim-hello/runs"
    body = b'{"data": {"who": "page"}}'
    cross = http.post(start, data=body, headers={"content-type": "text/plain", "origin": EVIL})
    assert cross.status_code == 403
    assert http.post(start, data=body, content_type="text/plain").status_code == 415
    rebound = http.get("/v1/runs", headers={"host": "rebind.example"})
    assert rebound.status_code == 403
    assert http.get("/v1/runs").get_json()["data"] == []
    assert http.post(start, data=body, content_type="application/json").status_code == 201


def test_an_embedded_engine_told_allow_public_answers_any_host(tmp_path: Path) -> None:
    client, functions = _app("http://127.0.0.1:1")
    engine = EmbeddedEngine(
        client, functions, database=str(tmp_path / "pub.db"), allow_public_bind=True, **FAST
    )
    try:
        http = werkzeug.test.Client(engine.wsgi_app())
        assert http.get("/v1/runs", headers={"host": "devbox.lan:8000"}).status_code == 200
        plain = http.post("/e/k", data=b'{"name": "x"}', content_type="text/plain")
        assert plain.status_code == 415
    finally:
        engine.stop()


# -- start mode: a signed-in browser -------------------------------------------------------------


def test_a_signed_in_dashboard_refuses_writes_another_site_sent(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from stepline.engine import Engine, EngineSettings
    from stepline.engine._http.api import build_app

    settings = EngineSettings(
        mode="start",
        database_url=str(tmp_path / "start.db"),
        signing_keys=("signkey-prod-" + "5c" * 32,),
        event_keys=("start-event-key",),
        dashboard_keys=("start dashboard passphrase",),
    )
    with TestClient(build_app(Engine(settings)), base_url="https://engine.example") as http:
        signed = http.post("/login", data={"key": "start dashboard passphrase"})
        assert signed.status_code == 200  # followed to the dashboard
        assert http.cookies.get("stepline_session")
        event = {"name": "dash/write"}
        csrf = {"x-stepline-csrf": "1"}
        for site in ("cross-site", "same-site"):
            sent = http.post("/v1/events", json=event, headers={**csrf, "sec-fetch-site": site})
            assert sent.status_code == 401, (site, sent.text)
        # reads are not writes; the dashboard's own writes pass, as do browsers without it
        assert http.get("/v1/runs", headers={"sec-fetch-site": "cross-site"}).status_code == 200
        own = http.post("/v1/events", json=event, headers={**csrf, "sec-fetch-site": "same-origin"})
        assert own.status_code == 200, own.text
        assert http.post("/v1/events", json=event, headers=csrf).status_code == 200
