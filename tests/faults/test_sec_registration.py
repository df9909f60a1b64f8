"""App registration cannot be hijacked.

Over real HTTP (uvicorn in threads, a start-mode engine on SQLite and Postgres):

* an unsigned ``PUT`` with a forged ``Host`` cannot make a production app register at the
  attacker's URL: the app answers 401 and never calls the engine;
* the engine signs its own sync ``PUT`` (and a signed PUT's body names the URL, not the
  ``Host`` header); a configured ``serve_origin`` lets an unsigned PUT sync that origin only;
* a registration that moves an app to a new origin is refused (403, the old URL kept)
  unless the new URL answers the engine's signed trust probe with a valid signature, or
  answers a sync the engine itself sent there; dev mode accepts the move and logs it;
* a function id stays with the app that registered it first (409);
* a signed call replayed with another ``fnId`` or ``stepId`` in its query is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from typing import Any

import fastapi
import httpx
import inngest
import pydantic.warnings
import pytest

import stepline
import stepline.asgi
from stepline import _errors
from stepline._comm import app_sync
from stepline._comm.handler import CommHandler
from stepline._comm.messages import CommRequest
from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings
from stepline.engine._errors import FunctionTakenError, RegistrationRefusedError
from stepline.engine._http.api import build_app
from tests._support import refusing
from tests._support.aio import arun
from tests._support.clients import closing_client
from tests._support.logs import captured_logs
from tests._support.polling import wait_until
from tests._support.recording import AppCalls
from tests._support.server_thread import AppServer

with warnings.catch_warnings():
    # inngest 0.5's CommRequest declares a class-based pydantic Config: one warning, on import
    warnings.filterwarnings(
        "ignore",
        message="Support for class-based `config` is deprecated",
        category=pydantic.warnings.PydanticDeprecatedSince20,
    )
    import inngest.fast_api

KEY = "signkey-prod-" + "5a6b" * 16
FOREIGN = "signkey-prod-" + "7c8d" * 16
EVENT_KEY = "reg-event-key"
EVIL = "evil.example:6666"
AUTH = {"authorization": signing.bearer_token(KEY)}


# -- the pieces --------------------------------------------------------------------------------


def _client(engine_url: str, key: str = KEY, app_id: str = "victim") -> stepline.Client:
    return stepline.Client(
        app_id=app_id,
        is_production=True,
        signing_key=key,
        event_key=EVENT_KEY,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=False,
        environ={},
    )


def _functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="one", trigger=stepline.TriggerEvent(event="reg/one"), retries=0)
    async def one(ctx: stepline.Context) -> int:
        return int(await ctx.step.run("a", lambda: 1))

    @client.function(id="two", trigger=stepline.TriggerEvent(event="reg/two"), retries=0)
    async def two(ctx: stepline.Context) -> int:
        return int(await ctx.step.run("b", lambda: 2))

    return [one, two]


def _serve(engine_url: str, key: str = KEY, serve_origin: str | None = None) -> AppCalls:
    client = _client(engine_url, key)
    app = stepline.asgi.serve(client, _functions(client), serve_origin=serve_origin)
    return AppCalls(closing_client(app, client))


def _settings(db: str, mode: str = "start") -> EngineSettings:
    keys = (KEY,) if mode == "start" else ()
    events = (EVENT_KEY,) if mode == "start" else ()
    return EngineSettings(
        mode=mode,  # type: ignore[arg-type]
        database_url=db,
        signing_keys=keys,
        event_keys=events,
        retry_scale=0.0,
        retry_jitter=0.0,
        poll_interval=0.05,
    )


@contextlib.contextmanager
def _engine(db: str) -> Iterator[str]:
    """A start-mode engine over HTTP; yields its base URL."""
    with AppServer(build_app(Engine(_settings(db))), name="engine") as server:
        yield server.base


def _apps(base: str) -> dict[str, str]:
    answer = httpx.get(f"{base}/v1/apps", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return {a["app_id"]: a["url"] for a in answer.json()["data"]}


def _function_urls(base: str) -> set[str]:
    """The URLs the engine calls the functions at (without ``fnId``/``stepId``)."""
    answer = httpx.get(f"{base}/v1/functions", headers=AUTH)
    assert answer.status_code == 200, answer.text
    found = answer.json()["data"]
    return {urllib.parse.urlsplit(f["config"]["url"])._replace(query="").geturl() for f in found}


def _sync(base: str, url: str) -> dict[str, Any]:
    answer = httpx.post(f"{base}/v1/apps/sync", json={"url": url}, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["data"]
    return result


def _body(url: str, app_id: str = "victim") -> dict[str, Any]:
    """The ``/fn/register`` body our SDK sends for the victim app served at ``url``."""
    client = _client("http://127.0.0.1:1", app_id=app_id)
    handler = CommHandler(client=client, functions=_functions(client), framework="asgi")
    try:
        return app_sync.register_payload(handler.endpoint, url)
    finally:
        handler.close()


def _register(base: str, body: dict[str, Any], **query: str) -> httpx.Response:
    return httpx.post(f"{base}/fn/register", json=body, params=query, headers=AUTH, timeout=60)


def _localhost(url: str) -> str:
    """The same server under another origin (``localhost`` instead of ``127.0.0.1``)."""
    return url.replace("://127.0.0.1:", "://localhost:")


# -- 1. the Host-header hijack ------------------------------------------------------------------


@pytest.mark.slow
def test_an_unsigned_put_with_a_forged_host_cannot_move_a_production_app(db: str) -> None:
    with _engine(db) as base:
        recorder = _serve(base)
        with AppServer(recorder, name="victim") as app:
            url = f"{app.base}/api/inngest"
            assert _sync(base, url)["ok"] is True
            with captured_logs("stepline") as lines:
                forged = httpx.put(url, headers={"host": EVIL}, timeout=30)
                empty_body = httpx.put(url, headers={"host": EVIL}, json={}, timeout=30)
            for answer in (forged, empty_body):
                assert answer.status_code == 401, answer.text
                problem = answer.json()
                assert problem["code"] == "sig_verification_failed"
                assert "serve_origin" in problem["message"]
                assert "/v1/apps/sync" in problem["message"]
            assert _apps(base) == {"victim": url}
            assert _function_urls(base) == {url}
            # the app never even asked the engine: no registration named the forged host
            assert not [line for line in lines if "evil.example" in line]
            assert any("401 sig_verification_failed" in line for line in lines)


# -- 2. the engine signs its sync; a signed PUT names the URL -----------------------------------


@pytest.mark.slow
def test_the_engine_signs_its_sync_put_and_the_signed_body_names_the_url(db: str) -> None:
    with _engine(db) as base:
        recorder = _serve(base)
        with AppServer(recorder, name="victim") as app:
            url = f"{app.base}/api/inngest"
            assert _sync(base, url) == {"url": url, "ok": True, "status": 200, "error": None}
            [put] = recorder.of("PUT")
            header = put["headers"]["x-inngest-signature"]
            assert signing.verify(put["body"], header, [KEY], now=put["received"]) == KEY
            assert json.loads(put["body"]) == {"url": url}
            assert put["query"]["deployId"]  # the engine's ticket for this sync
            assert put["headers"]["x-inngest-server-kind"] == "cloud"
            assert _apps(base) == {"victim": url}

            # a signed PUT (ours, replayed with a forged Host): the signed body wins
            body = json.dumps({"url": url}).encode()
            signed = {"x-inngest-signature": signing.sign(body, KEY, now=time.time())}
            replayed = httpx.put(url, content=body, headers={**signed, "host": EVIL}, timeout=30)
            assert replayed.status_code == 200, replayed.text
            assert _apps(base) == {"victim": url}
            # and a PUT signed with another key is refused before anything is sent
            foreign = {"x-inngest-signature": signing.sign(body, FOREIGN, now=time.time())}
            refused = httpx.put(url, content=body, headers=foreign, timeout=30)
            assert refused.status_code == 401
            assert refused.json()["code"] == "sig_verification_failed"


@pytest.mark.slow
def test_a_configured_serve_origin_lets_an_unsigned_put_sync_that_origin_only(db: str) -> None:
    with _engine(db) as base:
        app = AppServer(None, name="victim")  # the port is known before the app is built
        origin = _localhost(app.base)
        app.app = _serve(base, serve_origin=origin)
        with app:
            for host in (EVIL, "127.0.0.1"):
                answer = httpx.put(f"{app.base}/api/inngest", headers={"host": host}, timeout=30)
                assert answer.status_code == 200, answer.text
                assert _apps(base) == {"victim": f"{origin}/api/inngest"}
                assert _function_urls(base) == {f"{origin}/api/inngest"}


@pytest.mark.parametrize("path", ["/api/in\\gest", "/api/in gest", "/api/\x01x"])
def test_a_configured_origin_refuses_a_request_path_it_cannot_register(path: str) -> None:
    client = _client("http://127.0.0.1:1")
    handler = CommHandler(
        client=client,
        functions=_functions(client),
        framework="asgi",
        serve_origin="https://app.example",
    )
    try:
        request = CommRequest.build(method="PUT", url="http://x" + path, headers={}, body=b"")
        with pytest.raises(_errors.BodyInvalidError, match="serve_path"):
            app_sync.configured_url(handler.endpoint, request)
        fine = CommRequest.build(method="PUT", url="http://evil//evil.com/x", headers={}, body=b"")
        assert app_sync.configured_url(handler.endpoint, fine) == "https://app.example/evil.com/x"
    finally:
        handler.close()


# -- 3. moving an app to another origin ---------------------------------------------------------


def _impostor(status: int = 200, key: str | None = None) -> Any:
    """An ASGI app answering every request with ``null``, signed with ``key`` if given."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json")]
        if key is not None:
            headers.append(
                (b"x-inngest-signature", signing.sign(b"null", key, now=time.time()).encode())
            )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"null"})

    return app


@pytest.mark.slow
def test_the_engine_refuses_a_move_that_fails_the_trust_probe(db: str) -> None:
    with _engine(db) as base:
        recorder = _serve(base)
        with (
            AppServer(recorder, name="victim") as app,
            AppServer(_impostor(), name="unsigned") as unsigned,
            AppServer(_impostor(key=FOREIGN), name="foreign") as foreign,
            AppServer(_impostor(status=404, key=KEY), name="notfound") as notfound,
        ):
            url = f"{app.base}/api/inngest"
            assert _sync(base, url)["ok"] is True
            for where in (unsigned.base, foreign.base, notfound.base, refusing.url()):
                moved = f"{where}/api/inngest"
                with captured_logs("stepline.engine") as lines:
                    answer = _register(base, _body(moved))
                assert answer.status_code == 403, (where, answer.text)
                message = answer.json()["error"]
                assert url in message, message
                assert moved in message, message
                assert "stepline start -u" in message
                assert any("WARNING" in line and "refused to move" in line for line in lines)
                assert _apps(base) == {"victim": url}
                assert _function_urls(base) == {url}
            # one function pointed elsewhere is a move too
            body = _body(url)
            runtime = body["functions"][0]["steps"]["step"]["runtime"]
            runtime["url"] = runtime["url"].replace(app.base, unsigned.base)
            assert _register(base, body).status_code == 403
            assert _function_urls(base) == {url}

            # the same app under another origin answers the probe with the key: moved
            elsewhere = _localhost(url)
            accepted = _register(base, _body(elsewhere))
            assert accepted.status_code == 200, accepted.text
            assert _apps(base) == {"victim": elsewhere}
            [probe] = recorder.of("POST", probe="trust")
            assert json.loads(probe["body"])["url"] == elsewhere
            header = probe["headers"]["x-inngest-signature"]
            assert signing.verify(probe["body"], header, [KEY], now=probe["received"])


@pytest.mark.slow
def test_a_sync_the_engine_sent_moves_the_app_without_a_probe_once(db: str) -> None:
    with _engine(db) as base:
        recorder = _serve(base)
        with (
            AppServer(recorder, name="victim") as app,
            AppServer(_impostor(), name="unsigned") as unsigned,
        ):
            url = f"{app.base}/api/inngest"
            assert _sync(base, url)["ok"] is True
            elsewhere = _localhost(url)
            assert _sync(base, elsewhere)["ok"] is True
            assert _apps(base) == {"victim": elsewhere}
            assert recorder.of("POST", probe="trust") == []  # the engine's ticket vouched
            ticket = recorder.of("PUT")[-1]["query"]["deployId"]
            # a used ticket vouches for nothing: another origin gets the probe, and fails
            again = _register(base, _body(f"{unsigned.base}/api/inngest"), deployId=ticket)
            assert again.status_code == 403, again.text
            forged = _register(base, _body(f"{unsigned.base}/api/inngest"), deployId="made-up")
            assert forged.status_code == 403
            assert _apps(base) == {"victim": elsewhere}


def test_dev_mode_accepts_a_move_and_logs_it(db: str) -> None:
    async def main() -> None:
        async with Engine(_settings(db, mode="dev")) as engine:
            await engine.register(_body("http://127.0.0.1:7001/api/inngest"))
            with captured_logs("stepline.engine") as lines:
                await engine.register(_body("http://10.9.9.9:7002/api/inngest"))
            [app] = await engine.list_apps()
            assert app.url == "http://10.9.9.9:7002/api/inngest"
            assert any(
                "WARNING" in line and "moved from http://127.0.0.1:7001" in line for line in lines
            )

    arun(main())


def test_dev_mode_does_not_call_one_loopback_address_spelled_two_ways_a_move(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stepline.engine")

    async def main() -> None:
        async with Engine(_settings(db, mode="dev")) as engine:
            await engine.register(_body("http://127.0.0.1:7001/api/inngest"))
            await engine.register(_body("http://localhost:7001/api/inngest"))
            await engine.register(_body("http://[::1]:7001/api/inngest"))
            [app] = await engine.list_apps()
            assert app.url == "http://[::1]:7001/api/inngest"
            # another port on the loopback interface is another server: a move
            await engine.register(_body("http://localhost:7002/api/inngest"))

    arun(main())
    moved = [r.getMessage() for r in caplog.records if "moved" in r.getMessage()]
    assert moved == [
        "app victim moved from http://[::1]:7001/api/inngest to "
        "http://localhost:7002/api/inngest (dev mode accepts a move unverified)"
    ]


def test_a_second_app_version_at_another_url_is_registered_beside_not_moved(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stepline.engine")

    def versioned(url: str, version: str) -> dict[str, Any]:
        return {**_body(url), "appVersion": version}

    async def main() -> None:
        async with Engine(_settings(db, mode="dev")) as engine:
            await engine.register(versioned("http://127.0.0.1:7001/api/inngest", "v1"))
            await engine.register(versioned("http://127.0.0.1:7002/api/inngest", "v2"))
            # the same version from another address is a move
            await engine.register(versioned("http://10.9.9.9:7002/api/inngest", "v2"))

    arun(main())
    said = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if "moved" in r.getMessage() or "beside" in r.getMessage()
    ]
    assert said == [
        (
            "INFO",
            "app victim: version v2 registered at http://127.0.0.1:7002/api/inngest "
            "beside the others",
        ),
        (
            "WARNING",
            "app victim moved from http://127.0.0.1:7002/api/inngest to "
            "http://10.9.9.9:7002/api/inngest (dev mode accepts a move unverified)",
        ),
    ]


# -- 10. function ids belong to their app ---------------------------------------------------------


def _raw(app_id: str, url: str, *ids: str) -> dict[str, Any]:
    return {
        "appName": app_id,
        "url": url,
        "functions": [
            {
                "id": fid,
                "triggers": [{"event": "reg/x"}],
                "steps": {"step": {"id": "step", "runtime": {"url": f"{url}?fnId={fid}"}}},
            }
            for fid in ids
        ],
    }


def test_an_app_cannot_take_another_apps_function_id(db: str) -> None:
    async def main() -> None:
        async with Engine(_settings(db, mode="dev")) as engine:
            await engine.register(_raw("alpha", "http://127.0.0.1:7001/api", "shared", "alpha-a"))
            with pytest.raises(FunctionTakenError) as caught:
                await engine.register(_raw("beta", "http://127.0.0.1:7002/api", "beta-b", "shared"))
            assert caught.value.status == 409
            assert "'shared' (app 'alpha')" in str(caught.value)
            assert isinstance(caught.value, RegistrationRefusedError)
            # nothing of beta was written; alpha keeps its function
            assert [a.app_id for a in await engine.list_apps()] == ["alpha"]
            owners = {f.function_id: f.app_id for f in await engine.list_functions()}
            assert owners == {"shared": "alpha", "alpha-a": "alpha"}
            assert engine.registry.get("shared") is not None
            assert engine.registry.get("shared").app_id == "alpha"  # type: ignore[union-attr]
            # alpha itself may sync again, and give the id up; then beta may take it
            await engine.register(_raw("alpha", "http://127.0.0.1:7001/api", "alpha-a"))
            await engine.register(_raw("beta", "http://127.0.0.1:7002/api", "beta-b", "shared"))
            owners = {f.function_id: f.app_id for f in await engine.list_functions()}
            assert owners == {"shared": "beta", "alpha-a": "alpha", "beta-b": "beta"}

    arun(main())


def test_a_function_id_taken_over_http_is_a_409(db: str) -> None:
    with _engine(db) as base:
        assert (
            _register(base, _raw("alpha", "http://127.0.0.1:7001/api", "shared")).status_code == 200
        )
        answer = _register(base, _raw("beta", "http://127.0.0.1:7002/api", "shared"))
        assert answer.status_code == 409, answer.text
        assert "app 'alpha'" in answer.json()["error"]
        assert _apps(base) == {"alpha": "http://127.0.0.1:7001/api"}


# -- 10. fnId and stepId are bound to the signed body ---------------------------------------------


@pytest.mark.slow
def test_a_signed_call_cannot_be_pointed_at_another_function_or_step(db: str) -> None:
    with _engine(db) as base:
        recorder = _serve(base)
        with AppServer(recorder, name="victim") as app:
            url = f"{app.base}/api/inngest"
            assert _sync(base, url)["ok"] is True
            sent = httpx.post(f"{base}/e/{EVENT_KEY}", json={"name": "reg/one"})
            assert sent.status_code == 200, sent.text
            call = wait_until(
                lambda: next(iter(recorder.of("POST", fnId="victim-one")), None),
                message="the engine's call",
            )
            headers = {"x-inngest-signature": call["headers"]["x-inngest-signature"]}
            headers["content-type"] = "application/json"

            def replay(**query: str) -> httpx.Response:
                return httpx.post(url, params=query, content=call["body"], headers=headers)

            assert replay(fnId="victim-one", stepId="step").status_code == 206  # as signed
            other_fn = replay(fnId="victim-two", stepId="step")
            assert other_fn.status_code == 401, other_fn.text
            assert "fnId='victim-two'" in other_fn.json()["message"]
            other_step = replay(fnId="victim-one", stepId="b" * 40)
            assert other_step.status_code == 401, other_step.text
            assert "stepId=" in other_step.json()["message"]


def _signed_call(handler: CommHandler, query: str, ctx: dict[str, Any]) -> int:
    body = json.dumps(
        {
            "event": {"name": "reg/one", "data": {}, "ts": 1},
            "events": [{"name": "reg/one", "data": {}, "ts": 1}],
            "steps": {},
            "ctx": {
                "run_id": "01RUN",
                "attempt": 0,
                "disable_immediate_execution": False,
                "stack": {"stack": [], "current": 0},
                **ctx,
            },
            "use_api": False,
            "version": 2,
        }
    ).encode()
    headers = {"x-inngest-signature": signing.sign(body, KEY, now=time.time())}
    request = CommRequest.build(
        method="POST", url=f"http://app/api/inngest?{query}", headers=headers, body=body
    )
    return handler.handle_sync(request).status


def test_the_fn_and_step_binding_keeps_inngest_server_bodies_working() -> None:
    client = _client("http://127.0.0.1:1")
    handler = CommHandler(client=client, functions=_functions(client), framework="asgi")
    uuid = "3b1f5c6e-0000-4000-8000-00000000abcd"
    try:
        # Inngest's server: a UUID in ctx.fn_id and "step" in ctx.step_id, even targeted
        assert _signed_call(handler, "fnId=victim-one&stepId=step", {"fn_id": uuid}) == 206
        step_a = hashlib.sha1(b"a").hexdigest()  # the protocol hashes step ids with SHA-1
        targeted = f"fnId=victim-one&stepId={step_a}"
        assert _signed_call(handler, targeted, {"fn_id": uuid, "step_id": "step"}) == 206
        # ... but a body naming its step binds it, whoever sent it
        assert _signed_call(handler, targeted, {"fn_id": uuid, "step_id": "d" * 40}) == 401
        # a slug (Stepline's engine) binds both, even one of another app
        assert _signed_call(handler, "fnId=victim-one&stepId=step", {"fn_id": "other-x"}) == 401
        assert _signed_call(handler, targeted, {"fn_id": "victim-one"}) == 401
        assert _signed_call(handler, "fnId=victim-one&stepId=step", {"fn_id": "victim-one"}) == 206
    finally:
        handler.close()


def test_a_trust_probe_for_another_origin_is_refused_under_a_configured_origin() -> None:
    client = _client("http://127.0.0.1:1")
    handler = CommHandler(
        client=client,
        functions=_functions(client),
        framework="asgi",
        serve_origin="https://App.example",
    )

    def probe(url: str) -> tuple[int, dict[str, str]]:
        body = json.dumps({"url": url, "app_id": "victim"}).encode()
        headers = {"x-inngest-signature": signing.sign(body, KEY, now=time.time())}
        request = CommRequest.build(
            method="POST",
            url="https://app.example/api/inngest?probe=trust",
            headers=headers,
            body=body,
        )
        answer = handler.handle_sync(request)
        return answer.status, answer.headers

    try:
        status, _headers = probe("https://evil.example/api/inngest")
        assert status == 403  # a relay of the engine's probe for the attacker's URL
        status, headers = probe("https://app.example/api/inngest")
        assert status == 200
        assert headers["x-inngest-signature"]
    finally:
        handler.close()


def test_a_signed_trust_probe_nested_too_deep_to_decode_is_answered_not_crashed() -> None:
    """A body the JSON decoder cannot descend names no URL: no 500, no uncaught error."""
    client = _client("http://127.0.0.1:1")
    handler = CommHandler(
        client=client,
        functions=_functions(client),
        framework="asgi",
        serve_origin="https://app.example",
    )
    body = b"[" * 100_000 + b"]" * 100_000
    request = CommRequest.build(
        method="POST",
        url="https://app.example/api/inngest?probe=trust",
        headers={"x-inngest-signature": signing.sign(body, KEY, now=time.time())},
        body=body,
    )
    try:
        answer = handler.handle_sync(request)
        assert answer.status == 200
        assert answer.headers["x-inngest-signature"]
    finally:
        handler.close()


# -- the official inngest py SDK in production ----------------------------------------------------


@pytest.mark.slow
def test_an_official_inngest_py_app_syncs_and_is_kept_by_the_trust_probe(db: str) -> None:
    """inngest-py builds its URL from the PUT's ``Host``: the engine's probe is its guard."""
    with _engine(db) as base:
        client = inngest.Inngest(
            app_id="official",
            is_production=True,
            signing_key=KEY,
            event_key=EVENT_KEY,
            api_base_url=base,
            event_api_base_url=base,
        )

        @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="reg/hello"))
        async def hello(ctx: inngest.Context) -> str:
            return "hello"

        web = fastapi.FastAPI()
        inngest.fast_api.serve(web, client, [hello])
        with AppServer(web, name="official") as app:
            url = f"{app.base}/api/inngest"
            assert _sync(base, url)["ok"] is True  # our signed PUT, with its deployId
            assert _apps(base) == {"official": url}
            # the hijack against inngest-py: its registration names the forged host, and
            # the engine refuses it (the probe cannot reach a key holder there)
            httpx.put(url, headers={"host": EVIL}, timeout=60)
            assert _apps(base) == {"official": url}
            # the same app under another name answers the signed probe: it may move
            moved = _localhost(url)
            answer = httpx.put(url, headers={"host": moved.split("/")[2]}, timeout=60)
            assert answer.status_code == 200, answer.text
            assert _apps(base) == {"official": moved}
            sent = httpx.post(f"{base}/e/{EVENT_KEY}", json={"name": "reg/hello"})
            assert sent.status_code == 200, sent.text
            event_id = sent.json()["ids"][0]

            def ended() -> dict[str, Any] | None:
                runs = httpx.get(f"{base}/v1/events/{event_id}/runs", headers=AUTH).json()["data"]
                return runs[0] if runs and runs[0]["status"] in ("Completed", "Failed") else None

            run = wait_until(ended, message="the official app's run")
            assert run["status"] == "Completed", run
            assert run["output"] == "hello"


def test_a_registration_never_keeps_the_sync_deploy_id_in_its_urls() -> None:
    """inngest-js v4 registers the PUT's own URL, ``deployId`` (the engine's ticket) included."""
    from stepline.engine._apps import registry

    url = "http://app.test/api/inngest?x=1&deployId=stepline-abc"
    body = _raw("js-app", url, "js-app-one")
    runtime = body["functions"][0]["steps"]["step"]["runtime"]
    runtime["url"] = "http://app.test/api/inngest?deployId=stepline-abc&fnId=js-app-one"
    app = registry.parse_app(body)
    assert app.url == "http://app.test/api/inngest?x=1"
    assert app.functions[0].url == "http://app.test/api/inngest?fnId=js-app-one"
    assert "deployId" not in json.dumps(app.functions[0].config)
    again = _raw("js-app", url.replace("stepline-abc", "stepline-def"), "js-app-one")
    again["functions"] = body["functions"]
    assert registry.parse_app(again).checksum == app.checksum  # a resync changes nothing


@pytest.mark.slow
def test_a_new_version_at_a_new_url_needs_the_same_proof_as_a_move(db: str) -> None:
    """Blue/green: v2 beside v1 is a new URL, so it is probed like any move."""
    with _engine(db) as base:
        recorder = _serve(base)
        with (
            AppServer(recorder, name="victim") as app,
            AppServer(_impostor(), name="unsigned") as unsigned,
        ):
            url = f"{app.base}/api/inngest"
            assert _register(base, {**_body(url), "appVersion": "v1"}).status_code == 200
            forged = {**_body(f"{unsigned.base}/api/inngest"), "appVersion": "v2"}
            refused = _register(base, forged)
            assert refused.status_code == 403, refused.text
            listed = httpx.get(f"{base}/v1/apps/victim/versions", headers=AUTH)
            assert [v["version"] for v in listed.json()["data"]] == ["v1"], listed.text
            assert _apps(base) == {"victim": url}
            # the same app under another origin answers the probe with the key: v2 is added
            accepted = _register(base, {**_body(_localhost(url)), "appVersion": "v2"})
            assert accepted.status_code == 200, accepted.text
            listed = httpx.get(f"{base}/v1/apps/victim/versions", headers=AUTH)
            assert sorted(v["version"] for v in listed.json()["data"]) == ["v1", "v2"]
