"""Durable endpoints against an attacker: shared idempotency keys, stored credentials,
cross-site form posts.

The apps authenticate as real ones often do, in the framework (a FastAPI dependency, a
Flask login decorator) rather than in the endpoint's ``authorize``. Each runs an embedded
engine on SQLite; what a run stored is read back through the engine's REST API
(``GET /v1/runs/{id}``, mounted at ``/stepline`` in dev mode), as anyone holding an API key
or the dashboard would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import flask
import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

import stepline
import stepline.fastapi
import stepline.flask
import stepline.tornado
import stepline.web
from stepline._endpoints import redaction
from stepline.embedded import EmbeddedEngine

#: The app's sessions: a token (bearer or cookie) to its user.
USERS = {"tok-ada": "ada", "tok-bob": "bob"}


def _fastapi_user(request: fastapi.Request) -> str:
    """The app's own authentication: a FastAPI dependency, no ``authorize``."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    user = USERS.get(bearer) or USERS.get(request.cookies.get("session", ""))
    if user is None:
        raise fastapi.HTTPException(401, "log in first")
    request.state.user = user
    return user


@contextlib.contextmanager
def fastapi_app(tmp_path: Path, **options: Any) -> Iterator[tuple[httpx.Client, stepline.Client]]:
    """``POST /note`` (echoes the body: the caller's own data) behind the dependency,
    ``POST /open`` (no authentication, records the request it saw)."""
    client = stepline.Client("sec", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.post("/note", dependencies=[fastapi.Depends(_fastapi_user)])
    @stepline.fastapi.durable(client, **options)
    async def note(ctx: stepline.EndpointContext) -> dict[str, Any]:
        body = ctx.request.json()
        return await ctx.step.run("save", lambda: {"note": body, "principal": ctx.principal})

    @app.post("/open")
    @stepline.fastapi.durable(client, **options)
    async def open_(ctx: stepline.EndpointContext) -> dict[str, Any]:
        return {"headers": dict(ctx.request.headers), "query": dict(ctx.request.query)}

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    stepline.fastapi.serve(app, client, [], engine=engine)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        yield http, client


# -- an Idempotency-Key is the caller's, whoever authenticated them ------------------------


def test_fastapi_another_user_reusing_a_key_never_gets_the_first_users_response(
    tmp_path: Path,
) -> None:
    """The caller is unknown to the endpoint (no ``caller``, no ``authorize``): a key on
    an authenticated request is refused rather than shared by every user."""
    key = {"idempotency-key": "k-1"}
    with fastapi_app(tmp_path) as (http, _client):
        ada = http.post(
            "/note", json={"iban": "ada's"}, headers={"authorization": "Bearer tok-ada"}
        )
        assert ada.status_code == 200, ada.text  # no key: a run, as always
        ada = http.post(
            "/note", json={"iban": "ada's"}, headers={"authorization": "Bearer tok-ada", **key}
        )
        bob = http.post("/note", json={}, headers={"authorization": "Bearer tok-bob", **key})
        for answer in (ada, bob):
            assert answer.status_code == 400, answer.text
            assert "caller=" in answer.json()["error"]
            assert "idempotent-replayed" not in answer.headers
            assert "ada's" not in answer.text
        cookie = http.post("/note", json={}, headers={"cookie": "session=tok-bob", **key})
        assert cookie.status_code == 400, cookie.text


def test_fastapi_caller_scopes_the_key_to_the_framework_authenticated_user(
    tmp_path: Path,
) -> None:
    key = {"idempotency-key": "k-1"}
    ada_auth = {"authorization": "Bearer tok-ada", **key}
    bob_auth = {"authorization": "Bearer tok-bob", **key}
    caller: Callable[[fastapi.Request], str] = lambda request: f"user:{request.state.user}"  # noqa: E731
    with fastapi_app(tmp_path, caller=caller) as (http, client):
        ada = http.post("/note", json={"iban": "ada's"}, headers=ada_auth)
        bob = http.post("/note", json={"iban": "bob's"}, headers=bob_auth)
        again = http.post("/note", json={"iban": "ada's"}, headers=ada_auth)
        assert ada.status_code == bob.status_code == again.status_code == 200
        assert bob.json() == {"note": {"iban": "bob's"}, "principal": "user:bob"}
        assert "idempotent-replayed" not in bob.headers
        assert ada.headers["x-stepline-run-id"] != bob.headers["x-stepline-run-id"]
        assert again.headers["x-stepline-run-id"] == ada.headers["x-stepline-run-id"]
        assert again.headers["idempotent-replayed"] == "true"
        run = client.get_run_sync(bob.headers["x-stepline-run-id"]).describe()
        assert run.started_by == "user:bob"


def test_an_anonymous_request_may_still_send_a_key(tmp_path: Path) -> None:
    """No credential: nothing is anyone's; the key (a random one) is the only secret."""
    with fastapi_app(tmp_path) as (http, _client):
        first = http.post("/open", headers={"idempotency-key": "k-anon"})
        second = http.post("/open", headers={"idempotency-key": "k-anon"})
        assert first.status_code == second.status_code == 200
        assert second.headers["idempotent-replayed"] == "true"


@contextlib.contextmanager
def flask_app(tmp_path: Path, **options: Any) -> Iterator[flask.testing.FlaskClient]:
    """``POST /note`` behind a login decorator reading a session cookie (no ``authorize``)."""
    client = stepline.Client("sec-flask", is_production=False, environ={})
    app = flask.Flask(__name__)

    def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(**kwargs: Any) -> Any:
            user = USERS.get(flask.request.cookies.get("session", ""))
            if user is None:
                return {"error": "log in first"}, 401
            flask.g.user = user
            return view(**kwargs)

        return wrapped

    @app.post("/note")
    @login_required
    @stepline.flask.durable(client, **options)
    def note(ctx: stepline.SyncEndpointContext) -> dict[str, Any]:
        body = ctx.request.json()
        return ctx.step.run("save", lambda: {"note": body, "principal": ctx.principal})

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    stepline.flask.serve(app, client, [], engine=engine)
    try:
        yield app.test_client()
    finally:
        engine.stop()


@pytest.mark.parametrize("with_caller", [False, True], ids=["no-caller", "caller"])
def test_flask_another_user_reusing_a_key_never_gets_the_first_users_response(
    tmp_path: Path, with_caller: bool
) -> None:
    options: dict[str, Any] = {"caller": lambda request: flask.g.user} if with_caller else {}
    key = {"idempotency-key": "k-1"}
    with flask_app(tmp_path, **options) as http:
        http.set_cookie("session", "tok-ada")
        ada = http.post("/note", json={"iban": "ada's"}, headers=key)
        http.set_cookie("session", "tok-bob")
        bob = http.post("/note", json={"iban": "bob's"}, headers=key)
        assert "ada's" not in bob.get_data(as_text=True)
        assert "idempotent-replayed" not in bob.headers
        if not with_caller:
            assert (ada.status_code, bob.status_code) == (400, 400)
            assert "caller=" in bob.get_json()["error"]
            return
        assert (ada.status_code, bob.status_code) == (200, 200)
        assert bob.get_json() == {"note": {"iban": "bob's"}, "principal": "bob"}
        http.set_cookie("session", "tok-ada")
        again = http.post("/note", json={"iban": "ada's"}, headers=key)
        assert again.headers["x-stepline-run-id"] == ada.headers["x-stepline-run-id"]
        assert again.headers["idempotent-replayed"] == "true"


def test_a_caller_hook_answering_something_else_is_a_config_error(tmp_path: Path) -> None:
    with (
        fastapi_app(tmp_path, caller=lambda request: 42) as (http, _client),
        pytest.raises(stepline.ConfigError, match="caller hook returned int"),
    ):
        http.post("/note", json={}, headers={"authorization": "Bearer tok-ada"})


# -- what a run stores of the request -----------------------------------------------------

GATEWAY_CREDENTIALS = {
    "x-forwarded-access-token": "oauth2-proxy-s3cret",  # oauth2-proxy
    "cf-access-jwt-assertion": "cloudflare-s3cret",  # Cloudflare Access
    "apikey": "kong-s3cret",  # Kong's key-auth
    "authorization": "Bearer auth-s3cret",
    "cookie": "session=cookie-s3cret",
}


def _stored(http: httpx.Client, run_id: str) -> str:
    """The run as the engine's REST API returns it (``GET /v1/runs/{id}``), as text."""
    answer = http.get(f"/stepline/v1/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_credential_headers_and_query_values_are_not_stored_with_the_run(
    tmp_path: Path,
) -> None:
    with fastapi_app(tmp_path) as (http, _client):
        headers = {**GATEWAY_CREDENTIALS, "x-request-id": "req-7", "x-custom": "custom-value"}
        query = {"access_token": "query-s3cret", "api_key": "query-key-s3cret", "page": "2"}
        answer = http.post("/open", params=query, headers=headers)
        assert answer.status_code == 200, answer.text
        seen = answer.json()
        stored = _stored(http, answer.headers["x-stepline-run-id"])
    assert "s3cret" not in stored
    assert "s3cret" not in answer.text  # the handler saw what was stored, no more
    assert seen["query"] == {"access_token": "[redacted]", "api_key": "[redacted]", "page": "2"}
    assert seen["headers"]["x-request-id"] == "req-7"  # the default allowlist
    assert "x-custom" not in seen["headers"]  # not allowlisted: least data
    assert '"page":"2"' in stored.replace(" ", "")  # the request is in the view read back


def test_keep_headers_and_keep_query_store_a_named_one(tmp_path: Path) -> None:
    with fastapi_app(tmp_path, keep_headers=["X-Custom"], keep_query=["api_key"]) as (http, _):
        answer = http.post(
            "/open", params={"api_key": "kept", "token": "t"}, headers={"x-custom": "c"}
        )
        seen = answer.json()
    assert seen["headers"]["x-custom"] == "c"
    assert seen["query"] == {"api_key": "kept", "token": "[redacted]"}


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


# -- cross-site form posts ----------------------------------------------------------------

FORM = {"content-type": "application/x-www-form-urlencoded"}
CROSS = [
    {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
    {"sec-fetch-site": "same-site", "origin": "https://evil.localhost"},
    {"origin": "https://evil.example"},  # a browser without Sec-Fetch-Site
    {"origin": "null"},  # a sandboxed frame, a data: URL
]


@contextlib.contextmanager
def cookie_app(tmp_path: Path, **options: Any) -> Iterator[tuple[httpx.Client, list[str]]]:
    """``POST /transfer``, authorized by the session cookie; ``reached`` logs who got in."""
    reached: list[str] = []

    def authorize(access: stepline.web.AccessRequest) -> stepline.web.Principal:
        reached.append("authorize")
        user = USERS.get(access.request.cookies.get("session", ""))
        if user is None:
            raise stepline.web.AccessDenied("log in first", status=401)
        return stepline.web.Principal(user)

    client = stepline.Client("sec-xs", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.post("/transfer")
    @stepline.fastapi.durable(client, authorize=authorize, **options)
    async def transfer(ctx: stepline.EndpointContext) -> dict[str, Any]:
        reached.append("handler")
        return {"to": ctx.request.form().get("to") or ctx.request.json().get("to")}

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    stepline.fastapi.serve(app, client, [], engine=engine)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        http.cookies.set("session", "tok-ada")
        yield http, reached


@pytest.mark.parametrize("cross", CROSS, ids=["sec-fetch-site", "same-site", "origin", "null"])
@pytest.mark.parametrize("kind", [FORM["content-type"], "text/plain", "multipart/form-data"])
def test_a_cross_site_form_post_with_the_users_cookie_reaches_no_handler(
    tmp_path: Path, cross: dict[str, str], kind: str
) -> None:
    with cookie_app(tmp_path) as (http, reached):
        forged = http.post(
            "/transfer", content=b"to=mallory", headers={"content-type": kind, **cross}
        )
        assert forged.status_code == 403, forged.text
        assert "another site" in forged.json()["error"]
        assert "x-stepline-run-id" not in forged.headers
    assert reached == []  # neither authorize nor the handler ran


def test_same_origin_forms_json_calls_and_webhooks_still_work(tmp_path: Path) -> None:
    with cookie_app(tmp_path) as (http, reached):
        same = {"sec-fetch-site": "same-origin", "origin": "http://localhost", **FORM}
        assert http.post("/transfer", content=b"to=bob", headers=same).json() == {"to": "bob"}
        old_browser = {"origin": "http://localhost", **FORM}  # no Sec-Fetch-Site: Origin
        assert http.post("/transfer", content=b"to=bob", headers=old_browser).status_code == 200
        # JSON cannot be sent cross-site without the app's CORS permission (a preflight)
        api = {"sec-fetch-site": "cross-site", "origin": "https://partner.example"}
        assert http.post("/transfer", json={"to": "carol"}, headers=api).json() == {"to": "carol"}
        guarded = {"x-stepline-csrf": "1", "sec-fetch-site": "cross-site", **FORM}
        assert http.post("/transfer", content=b"to=dan", headers=guarded).status_code == 200
        webhook = FORM  # no browser: no Origin, no Sec-Fetch-Site
        assert http.post("/transfer", content=b"to=erin", headers=webhook).status_code == 200
    assert reached.count("handler") == 5


def test_cross_site_true_takes_cross_site_form_posts(tmp_path: Path) -> None:
    """A payment provider's page posting the browser back to the app, on purpose."""
    with cookie_app(tmp_path, cross_site=True) as (http, reached):
        posted = http.post("/transfer", content=b"to=shop", headers={**CROSS[0], **FORM})
        assert posted.status_code == 200, posted.text
    assert reached == ["authorize", "handler"]


def test_tornado_caller_is_the_handlers_current_user(tmp_path: Path) -> None:
    """Tornado's idiom: the handler's ``get_current_user``; the hook gets the handler."""
    client = stepline.Client("sec-tornado", is_production=False, environ={})

    @stepline.tornado.durable(client, caller=lambda handler: handler.current_user)
    async def note(ctx: stepline.EndpointContext) -> dict[str, Any]:
        return {"note": ctx.request.json(), "principal": ctx.principal}

    class Note(note):  # type: ignore[misc, valid-type]
        def get_current_user(self) -> str | None:
            return USERS.get(self.get_cookie("session", ""))

    app = tornado.web.Application([(r"/note", Note)])
    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    stepline.tornado.serve(app, client, [], engine=engine)
    key = {"idempotency-key": "k-1"}

    async def calls() -> list[httpx.Response]:
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=20) as http:
                return [
                    await http.post("/note", json=body, headers={"cookie": f"session={s}", **key})
                    for s, body in [("tok-ada", "ada's"), ("tok-bob", "bob's"), ("tok-ada", "")]
                ]
        finally:
            server.stop()

    try:
        ada, bob, again = asyncio.run(calls())
    finally:
        engine.stop()
    assert (ada.status_code, bob.status_code, again.status_code) == (200, 200, 200), bob.text
    assert bob.json() == {"note": "bob's", "principal": "bob"}
    assert "idempotent-replayed" not in bob.headers
    assert again.headers["x-stepline-run-id"] == ada.headers["x-stepline-run-id"]
    assert again.json() == {"note": "ada's", "principal": "ada"}  # replayed, ada's own
