"""Every route x every credential kind, generated from the table (``stepline._serving.access``).

In production (``stepline start``) a route lets in exactly the kinds its row lists and
answers 401 (or 403) to every other; a route the app serves without a row, or a row no
route serves, fails. In dev mode no credential is needed, and the guard refuses what a
web page could send from another site or through DNS rebinding, on every route.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import starlette.routing
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import stepline
from stepline._comm.handler import CommHandler
from stepline._comm.messages import CommRequest
from stepline._connect import kinds, proto
from stepline._protocol import signals as signal_tokens
from stepline._protocol import signing
from stepline._serving import access as _access
from stepline._serving.access import Credential, Role, Route
from stepline._webkit import routes as _webkit
from stepline.ai import DurableAgent
from stepline.embedded import EmbeddedEngine, _direct
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._http.dashboard import COOKIE, CSRF_HEADER
from stepline.engine._users import DashboardUser

pytestmark = pytest.mark.timeout(120)

SIGNING_KEY = "signkey-prod-" + "a1b2" * 16
EVENT_KEY = "matrix-event-key"
DASHBOARD_KEY = "sixteen-char-key"  # what people type: 16 characters
#: a named dashboard user of each role, and the key each signs in with
USERS = tuple(DashboardUser(f"matrix-{r.value}", r, f"{r.value}-key-" + "x" * 16) for r in Role)
SUBPROTOCOL = "v0.connect.inngest.com"
#: what the engine's table may list (the kit caller is the app's ``authorize``, not the
#: engine's: it is presented to the engine as nothing at all)
ENGINE_KINDS = tuple(k for k in Credential if k is not Credential.KIT_CALLER)
HTTP_ROWS = [row for row in _access.ENGINE if row.method != _access.WEBSOCKET]
SOCKET_ROWS = [row for row in _access.ENGINE if row.method == _access.WEBSOCKET]
FUNCTIONS = [
    {
        "id": "matrix-app-fn",
        "name": "fn",
        "triggers": [{"event": "matrix/x"}],
        "steps": {
            "step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": "wss://x"}}
        },
    }
]


def _id(row: Route) -> str:
    return f"{row.method} {row.path}"


def _production(db: Path) -> EngineSettings:
    return EngineSettings(
        mode="start",
        database_url=str(db),
        signing_keys=(SIGNING_KEY,),
        event_keys=(EVENT_KEY,),
        dashboard_keys=(DASHBOARD_KEY,),
        dashboard_users=USERS,
        poll_interval=0.05,
    )


class Credentials:
    """How a request presents each kind, on a start-mode engine."""

    def __init__(self, http: TestClient, engine: Engine) -> None:
        signed_in = http.post("/login", data={"key": DASHBOARD_KEY}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        self.session = signed_in.cookies[COOKIE]
        http.cookies.clear()  # each request presents the session only when it means to
        #: a session of each role's named user
        self.sessions: dict[Role, str] = {}
        for user in USERS:
            answer = http.post("/login", data={"key": user.key}, follow_redirects=False)
            assert answer.status_code == 303, answer.text
            self.sessions[user.role] = answer.cookies[COOKIE]
            http.cookies.clear()
        self.engine = engine
        #: a token shaped and signed as the engine's, for a run that waits for nothing
        self.hook = signal_tokens.token(SIGNING_KEY, "01MATRIXRUN", "approved")

    def connect_tokens(self) -> tuple[str, str, str]:
        """A fresh connection id and its session and sync tokens (as the start route gives)."""
        conn_id = f"01MATRIX{time.monotonic_ns()}"
        tokens, now = self.engine.connect.tokens, time.time()
        return (
            conn_id,
            tokens.issue("session", conn_id, now=now),
            tokens.issue("sync", conn_id, now=now),
        )

    def as_role(self, row: Route, role: Role) -> dict[str, Any]:
        """A request to ``row`` with the session of ``role``'s named user."""
        request = self.request(row, Credential.SESSION)
        request["headers"]["cookie"] = f"{COOKIE}={self.sessions[role]}"
        return request

    def request(self, row: Route, kind: Credential) -> dict[str, Any]:
        """``url``, ``headers`` and ``content`` of a request to ``row`` presenting ``kind``."""
        params = {
            "key": EVENT_KEY if kind is Credential.EVENT_KEY else "not-the-event-key",
            "token": self.hook if kind is Credential.HOOK_TOKEN else "not-a-token",
        }
        url = _filled(row.path, params)
        body = b"{}" if row.method in ("POST", "PUT") else b""
        headers = {"content-type": "application/json"} if body else {}
        if kind is Credential.SIGNING_KEY:
            headers["authorization"] = signing.bearer_token(SIGNING_KEY)
        elif kind is Credential.EVENT_KEY:  # and as a bearer: it opens /e/{key} only
            headers["authorization"] = f"Bearer {EVENT_KEY}"
        elif kind is Credential.SESSION:
            headers["cookie"] = f"{COOKIE}={self.session}"
            headers[CSRF_HEADER] = "1"
            headers["sec-fetch-site"] = "same-origin"
        elif kind is Credential.HOOK_TOKEN:
            headers["authorization"] = f"Bearer {self.hook}"
        elif kind is Credential.CONNECT_TOKEN:
            headers["authorization"] = f"Bearer {self.connect_tokens()[1]}"
        elif kind is Credential.SIGNATURE:  # what the engine signs its calls to apps with
            headers["x-inngest-signature"] = signing.sign(body, SIGNING_KEY, now=time.time())
        return {"method": row.method, "url": url, "headers": headers, "content": body}


def _filled(path: str, params: dict[str, str]) -> str:
    """``path`` with every ``{name}`` (or ``{name:path}``) replaced."""
    out, rest = "", path
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        out += before + params.get(name.split(":")[0], "matrix-x")
    return out + rest


@contextlib.contextmanager
def _app(settings: EngineSettings, **client: Any) -> Iterator[tuple[TestClient, Engine]]:
    engine = Engine(settings)
    with TestClient(build_app(engine), **client) as http:
        yield http, engine


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, Credentials]]:
    db = tmp_path_factory.mktemp("access") / "e.db"
    with _app(_production(db)) as (http, engine):
        yield http, Credentials(http, engine)


def _refusals(row: Route) -> tuple[int, ...]:
    # a capability in the URL that is not a live one is not found, whatever else is sent
    if all(kind.capability for kind in row.accepts):
        return (401, 403, 404)
    return (401, 403)


# -- the table against the app ----------------------------------------------------------------


def _served(app: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, starlette.routing.Route):
            found |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, starlette.routing.WebSocketRoute):
            found.add((_access.WEBSOCKET, route.path))
        else:
            found.add(("?", repr(route)))  # a mount or anything else: not in the table
    return found


@pytest.mark.parametrize("mode", ["start", "dev"])
def test_every_route_the_app_serves_has_a_row_and_every_row_a_route(
    tmp_path: Path, mode: str
) -> None:
    settings = _production(tmp_path / "e.db")
    if mode == "dev":
        settings = EngineSettings(database_url=str(tmp_path / "e.db"))
    served = _served(build_app(Engine(settings)))
    listed = {(row.method, row.path) for row in _access.ENGINE}
    assert sorted(served - listed) == [], "routes without a row in stepline._serving.access.ENGINE"
    assert sorted(listed - served) == [], "rows no route serves"
    assert len(listed) == len(_access.ENGINE), "a route listed twice"


def test_a_route_without_a_row_stops_the_app_from_being_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = tuple(r for r in _access.ENGINE if r.path != "/v1/runs/{run_id}/rerun")
    monkeypatch.setattr(_access, "_BY_KEY", {(r.method, r.path): r for r in dropped})
    with pytest.raises(RuntimeError, match=r"POST /v1/runs/\{run_id\}/rerun has no row"):
        build_app(Engine(_production(tmp_path / "e.db")))


def test_the_sdk_and_worker_routes_take_the_signing_key_alone() -> None:
    sdk_only = {
        "/fn/register",
        "/v0/connect/start",
        "/v0/connect/flush",
        "/v0/connect/forward",
        "/v1/checkpoint/{run_id}/async",
        "/v1/functions/{function_id:path}/inline",
        "/v1/runs/{run_id}/inline/checkpoint",
        "/v1/runs/{run_id}/inline/answer",
        "/v0/runs/{run_id}/batch",
        "/v0/runs/{run_id}/actions",
        "/v1/outbox/deliveries",
    }
    for row in _access.ENGINE:
        if row.path in sdk_only:
            assert row.accepts == {Credential.SIGNING_KEY}, _id(row)
        # a dashboard session never reaches a route a browser cannot be refused on
        assert Credential.SESSION not in row.accepts or Credential.SIGNING_KEY in row.accepts


# -- production: every route x every kind -----------------------------------------------------


@pytest.mark.parametrize("row", HTTP_ROWS, ids=_id)
def test_each_route_lets_in_exactly_the_kinds_its_row_lists(
    production: tuple[TestClient, Credentials], row: Route
) -> None:
    http, credentials = production
    for kind in ENGINE_KINDS:
        answer = http.request(**credentials.request(row, kind))
        accepted = kind in row.accepts or Credential.NONE in row.accepts
        if accepted:
            assert answer.status_code not in (401, 403), (kind, answer.text)
        else:
            assert answer.status_code in _refusals(row), (kind, answer.status_code, answer.text)


# -- production: every route x every role -----------------------------------------------------

SESSION_ROWS = [row for row in HTTP_ROWS if Credential.SESSION in row.accepts]


@pytest.mark.parametrize("row", SESSION_ROWS, ids=_id)
def test_each_role_is_let_in_exactly_where_the_rows_role_allows(
    production: tuple[TestClient, Credentials], row: Route
) -> None:
    http, credentials = production
    for role in Role:
        answer = http.request(**credentials.as_role(row, role))
        if role.allows(row.role):
            assert answer.status_code not in (401, 403), (role, answer.text)
        else:
            assert answer.status_code == 403, (role, answer.status_code, answer.text)
            refused = answer.json()
            assert refused["needed"] == row.role.value
            assert refused["role"] == role.value
            assert f"needs the {row.role.value} role" in refused["error"]
            assert f"matrix-{role.value} has the {role.value} role" in refused["error"]


def test_the_roles_rows_are_the_minimum_the_table_promises() -> None:
    """What each role is for, as the table states it: a viewer reads, an operator acts on
    runs, an admin manages apps, functions, bulk actions and the audit log."""
    for row in SESSION_ROWS:
        if row.method == "GET" and row.path not in ("/v1/audit",):
            # reads: a viewer's, except what streams or hands over payloads whole
            assert row.role in (Role.VIEWER, Role.OPERATOR), _id(row)
            if row.role is Role.OPERATOR:
                assert row.payloads, _id(row)
    admin_only = {
        ("POST", "/v1/apps/sync"),
        ("DELETE", "/v1/apps/{app_id}/versions/{version}"),
        ("POST", "/v1/functions/{function_id:path}/pause"),
        ("POST", "/v1/functions/{function_id:path}/resume"),
        ("POST", "/v1/bulk/cancel"),
        ("POST", "/v1/bulk/replay"),
        ("POST", "/v1/bulk/{bulk_id}/cancel"),
        ("GET", "/v1/audit"),
    }
    #: what a user keeps for themselves (their saved views) changes nothing of others'
    own = {("PUT", "/v1/views/{name}"), ("DELETE", "/v1/views/{name}")}
    for row in SESSION_ROWS:
        if (row.method, row.path) in admin_only:
            assert row.role is Role.ADMIN, _id(row)
        elif (row.method, row.path) in own:
            assert row.role is Role.VIEWER, _id(row)
        elif row.method in ("POST", "PUT", "DELETE") and row.path != "/v0/gql":
            assert row.role is Role.OPERATOR, _id(row)


@pytest.mark.parametrize("row", SESSION_ROWS, ids=_id)
def test_the_signing_key_and_the_unnamed_dashboard_key_are_admins(
    production: tuple[TestClient, Credentials], row: Route
) -> None:
    http, credentials = production
    for kind in (Credential.SIGNING_KEY, Credential.SESSION):
        answer = http.request(**credentials.request(row, kind))
        assert answer.status_code not in (401, 403), (kind, answer.text)


def test_a_session_of_a_user_no_longer_configured_is_refused(tmp_path: Path) -> None:
    settings = _production(tmp_path / "e.db")
    with _app(settings) as (http, engine):
        credentials = Credentials(http, engine)
    # the same keys, one user less: the viewer's session names no one now
    fewer = dataclasses.replace(settings, dashboard_users=USERS[1:])
    [row] = [r for r in SESSION_ROWS if (r.method, r.path) == ("GET", "/v1/runs")]
    with _app(fewer) as (http, _engine):
        answer = http.request(**credentials.as_role(row, Role.VIEWER))
        assert answer.status_code == 401, answer.text


def _worker_connect(conn_id: str, session: str, sync: str) -> bytes:
    fields = {
        "connection_id": conn_id,
        "instance_id": "matrix",
        "auth_data": {"session_token": session, "sync_token": sync},
        "apps": [{"app_name": "matrix-app", "functions": json.dumps(FUNCTIONS).encode()}],
        "sdk_language": "py",
        "sdk_version": "0.0.1",
        "framework": "connect",
    }
    return kinds.frame(kinds.WORKER_CONNECT, proto.encode("WorkerConnectRequestData", fields))


def _closed(ws: Any) -> int:
    """The close code, after draining what came before it."""
    try:
        while True:
            ws.receive_bytes()
    except WebSocketDisconnect as closed:
        return int(closed.code)


@pytest.mark.parametrize("row", SOCKET_ROWS, ids=_id)
def test_the_gateway_socket_takes_a_connect_token_and_nothing_else(
    production: tuple[TestClient, Credentials], row: Route
) -> None:
    http, credentials = production
    assert row.accepts == {Credential.CONNECT_TOKEN}
    for kind in ENGINE_KINDS:
        conn_id, session, sync = credentials.connect_tokens()
        presented = credentials.request(row, kind)["headers"]
        if kind is not Credential.CONNECT_TOKEN:  # the other kinds' secrets, as the tokens
            secret = presented.get("authorization", "").removeprefix("Bearer ")
            secret = (
                secret or presented.get("cookie", "") or presented.get("x-inngest-signature", "")
            )
            session = sync = secret
        with http.websocket_connect(row.path, subprotocols=[SUBPROTOCOL], headers=presented) as ws:
            hello = proto.decode("ConnectMessage", ws.receive_bytes())
            assert hello.get("kind", 0) == kinds.GATEWAY_HELLO
            ws.send_bytes(_worker_connect(conn_id, session, sync))
            if kind is Credential.CONNECT_TOKEN:
                ready = proto.decode("ConnectMessage", ws.receive_bytes())
                assert ready.get("kind") == kinds.GATEWAY_CONNECTION_READY, (kind, ready)
                continue
            assert _closed(ws) == 1008, kind


# -- dev mode: no credentials, and nothing a web page could send -------------------------------


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("access-dev") / "e.db"
    with _app(EngineSettings(database_url=str(db)), base_url="http://127.0.0.1:8288") as (
        http,
        _engine,
    ):
        yield http


def _dev_request(row: Route, **headers: str) -> dict[str, Any]:
    url = _filled(row.path, {"key": "any", "token": "not-a-token"})
    body = b"{}" if row.method in ("POST", "PUT") else b""
    if body:
        headers["content-type"] = "application/json"
    return {"method": row.method, "url": url, "headers": headers, "content": body}


PAGES: dict[str, Callable[[], dict[str, str]]] = {
    "another site's page": lambda: {
        "origin": "https://evil.example",
        "sec-fetch-site": "cross-site",
    },
    "DNS rebinding": lambda: {"host": "evil.example:8288"},
}


@pytest.mark.parametrize("row", HTTP_ROWS, ids=_id)
def test_dev_mode_needs_no_credentials_and_refuses_web_pages_on_every_route(
    dev: TestClient, row: Route
) -> None:
    answer = dev.request(**_dev_request(row))  # a tool or an SDK: no credentials at all
    assert answer.status_code not in (401, 403), answer.text
    for what, headers in PAGES.items():
        answer = dev.request(**_dev_request(row, **headers()))
        assert answer.status_code == 403, (what, answer.text)


@pytest.mark.parametrize("row", SOCKET_ROWS, ids=_id)
def test_dev_mode_refuses_the_gateway_socket_to_web_pages(dev: TestClient, row: Route) -> None:
    for what, headers in PAGES.items():
        opening = dev.websocket_connect(row.path, subprotocols=[SUBPROTOCOL], headers=headers())
        with pytest.raises(WebSocketDisconnect) as refused, opening:
            pass
        assert refused.value.code == 1008, what


# -- the framework's routes ---------------------------------------------------------------------


def _asking_agent() -> DurableAgent[None, str]:
    """A durable agent whose one tool call waits for a person's approval."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) > 1:
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("act", {}, "call-1")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="asker")

    @agent.tool_plain(requires_approval=True)
    def act() -> str:
        return "acted"

    return DurableAgent(agent, stream=False)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[tuple[stepline.Client, list[stepline.Function], str, str]]:
    """An app on an embedded engine: one run holding, one waiting for an approval (its id)."""
    client = stepline.Client("kitmatrix", is_production=False, environ={})
    asker = _asking_agent()

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="kitmatrix/hold"))
    async def hold(ctx: stepline.Context) -> str:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "released"

    @client.function(id="ask", trigger=stepline.TriggerEvent(event="kitmatrix/ask"))
    async def ask(ctx: stepline.Context) -> str:
        return (await asker.on(ctx).run("act")).output

    functions = [hold, ask]
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "e.db"), poll_interval=0.05)
    try:
        run_id = client.start_sync(hold, {}).run_id
        client.start_sync(ask, {})
        deadline = time.monotonic() + 30
        while not (pending := client.approvals_sync()[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client, functions, run_id, pending[0].approval_id
    finally:
        engine.stop()


def test_every_kit_route_asks_authorize_and_its_refusal_stands(
    kit: tuple[stepline.Client, list[stepline.Function], str, str],
) -> None:
    client, functions, run_id, approval_id = kit
    asked: list[str] = []

    def refuse(access: _webkit.AccessRequest) -> bool:
        asked.append(access.action)
        raise _webkit.AccessDenied("no", status=403)

    refusing = _webkit.RunRoutes(client, functions, authorize=refuse)
    admitting = _webkit.RunRoutes(client, functions, authorize=_webkit.allow_all)
    rows = [row for row in _access.FRAMEWORK if row.path.startswith("{kit}")]
    assert rows
    assert all(row.accepts == {Credential.KIT_CALLER} for row in rows)
    for row in rows:
        path = _filled(
            row.path.removeprefix("{kit}"), {"run_id": run_id, "approval_id": approval_id}
        )
        body = json.dumps({"function": functions[0].id, "data": {}}).encode()
        headers = {"content-type": "application/json", CSRF_HEADER: "1"}

        content = body if row.path == "{kit}/runs" else b""
        request = _webkit.WebRequest(row.method, path, {}, content, None, headers=headers)
        before = len(asked)
        refused = refusing.handle_sync(request)
        assert len(asked) == before + 1, _id(row)  # authorize decided this request
        # a run route's refusal is the unknown run's 404 (no answer tells which runs exist)
        assert refused.status in (401, 403, 404), (_id(row), refused.status)
        admitted = admitting.handle_sync(request)
        assert admitted.status not in (401, 403, 404), (_id(row), admitted.body)
        if admitted.stream is not None:
            admitted.stream.close()
    # the kit serves exactly the rows' routes: anything else under it is not found
    other = _webkit.WebRequest("GET", f"/runs/{run_id}/steps", {}, b"", None)
    assert admitting.handle_sync(other).status == 404


def test_the_serve_endpoint_takes_the_engines_signature_for_calls() -> None:
    [call] = [row for row in _access.FRAMEWORK if (row.method, row.path) == ("POST", "{serve}")]
    assert call.accepts == {Credential.SIGNATURE}
    client = stepline.Client("servematrix", is_production=True, signing_key=SIGNING_KEY, environ={})

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="servematrix/fn"))
    async def fn(ctx: stepline.Context) -> None:
        return None

    handler = CommHandler(client=client, functions=[fn], framework="asgi")
    url = "http://127.0.0.1:9/api/inngest?probe=trust"
    body = json.dumps({"url": "http://127.0.0.1:9/api/inngest"}).encode()
    try:
        unsigned = CommRequest.build(method="POST", url=url, headers={}, body=body)
        assert handler.handle_sync(unsigned).status == 401
        signature = signing.sign(body, SIGNING_KEY, now=time.time())
        signed = CommRequest.build(
            method="POST", url=url, headers={"x-inngest-signature": signature}, body=body
        )
        assert handler.handle_sync(signed).status == 200
    finally:
        handler.close()


def test_the_embedded_engines_direct_routes_are_rows_that_take_the_signing_key() -> None:
    """The embedded client's two hot requests skip the ASGI app: they check the bearer
    themselves (``_direct.Call.checked``), which the table must allow."""
    for path, method in ((_direct.START_ROUTE, "POST"), (_direct.RUN_ROUTE, "GET")):
        row = _access.engine_row(method, path)
        assert row is not None
        assert Credential.SIGNING_KEY in row.accepts


def test_the_refusal_tells_a_session_the_route_is_not_for_it(
    production: tuple[TestClient, Credentials],
) -> None:
    http, credentials = production
    [register] = [row for row in HTTP_ROWS if row.path == "/fn/register"]
    answer = http.request(**credentials.request(register, Credential.SESSION))
    assert answer.status_code == 401
    assert "a dashboard session does not reach it" in answer.json()["error"]
