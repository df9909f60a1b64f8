"""Ownership in the web kit: principals, scoped idempotency keys, runs shown to their starter.

The attacks, each through the kit's core (``RunRoutes`` with the sync and the async
driver); ``test_kit_contract`` makes the same ones through every framework:

- user B posts user A's idempotency key: B must get a run of its own, never A's id or
  A's result;
- B asks for A's run (status, result, events) or cancels it: the answer must be the
  404 of an unknown run, byte for byte (no existence leak), and A's run goes on;
- ``authorize`` refusing on a run route must not tell a known run from an unknown one.

Runs execute on an ``EmbeddedEngine`` (SQLite in ``tmp_path``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import stepline
import stepline.fastapi
import stepline.flask
import stepline.web
from stepline._api import runs as _runs
from stepline.embedded import EmbeddedEngine
from stepline.web import (
    AccessDenied,
    AccessRequest,
    Principal,
    RunRoutes,
    WebRequest,
    WebResponse,
)

T = TypeVar("T")
JSON = {"content-type": "application/json"}
#: what a state-changing request without a JSON body sends (the kit's cross-site guard)
CSRF = {"x-stepline-csrf": "1"}


@dataclasses.dataclass
class Kit:
    client: stepline.Client
    add: stepline.Function
    hold: stepline.Function
    hidden: stepline.Function
    engine: EmbeddedEngine

    @property
    def exposed(self) -> list[stepline.Function]:
        return [self.add, self.hold]

    def rest_run(self, run_id: str) -> dict[str, Any]:
        """The engine's REST view of a run (``GET /v1/runs/{id}``)."""
        flow = _runs.call(self.client.settings, "GET", f"/v1/runs/{run_id}", what=run_id)
        view: dict[str, Any] = self.client.connection.run_sync(flow)
        return view


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    client = stepline.Client("own", is_production=False, environ={})

    @client.function(id="add", trigger=stepline.TriggerEvent(event="own/add"))
    async def add(ctx: stepline.Context) -> dict[str, Any]:
        return {"secret": ctx.event.data.get("secret"), "n": ctx.event.data.get("n")}

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="own/hold"))
    async def hold(ctx: stepline.Context) -> str:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "released"

    @client.function(id="hidden", trigger=stepline.TriggerEvent(event="own/hidden"))
    async def hidden(ctx: stepline.Context) -> str:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "never shown"

    engine = EmbeddedEngine(
        client, [add, hold, hidden], database=str(tmp_path / "e.db"), poll_interval=0.05
    )
    yield Kit(client, add, hold, hidden, engine)
    engine.stop()


def unknown_like(run_id: str) -> str:
    """An id of the same length as ``run_id`` that names no run."""
    return run_id[:-1] + ("0" if run_id[-1] != "0" else "1")


def same_answer(mine: Answer, unknown: Answer, run_id: str, unknown_id: str) -> None:
    """``mine`` (about ``run_id``) is the unknown run's answer with only the id changed."""
    assert mine.status == unknown.status == 404
    assert mine.content_type == unknown.content_type
    assert mine.body == unknown.body.replace(unknown_id.encode(), run_id.encode())
    assert json.loads(mine.body) == {"error": f"run {run_id} not found"}


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


def by_user(access: AccessRequest) -> Principal:
    """The apps' hook: the caller is whoever ``x-user`` names; no header is a 401."""
    user = access.request.headers.get("x-user")
    if not user:
        raise AccessDenied("log in first", status=401)
    return Principal(str(user))


# -- the core, through both drivers ---------------------------------------------------------


class LoopThread:
    """An event loop in a daemon thread (an async server's loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclasses.dataclass
class Native:
    """Stands for the framework's request (what ``authorize`` reads)."""

    headers: dict[str, str]


class Core:
    """Calls ``RunRoutes`` through the sync or the async driver, as one user."""

    def __init__(self, routes: RunRoutes, face: str, loop: LoopThread) -> None:
        self.routes, self.face, self.loop = routes, face, loop

    def __call__(self, method: str, path: str, body: object = None, user: str = "") -> Answer:
        headers = {**JSON, **CSRF}
        if user:
            headers["x-user"] = user
        raw = b"" if body is None else json.dumps(body).encode()
        request = WebRequest(method, path, {}, raw, Native(headers), headers=headers)
        if self.face == "sync":
            response = self.routes.handle_sync(request)
            chunks = list(self.routes.chunks_sync(response)) if response.stream else []
        else:
            response = self.loop.run(self.routes.handle_async(request))
            chunks = self.loop.run(self._drain(response)) if response.stream else []
        return Answer(
            response.status, response.body + b"".join(chunks), response.headers["content-type"]
        )

    async def _drain(self, response: WebResponse) -> list[bytes]:
        return [chunk async for chunk in self.routes.chunks_async(response)]


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(params=["sync", "async"])
def core(request: pytest.FixtureRequest, kit: Kit, loop: LoopThread) -> Core:
    routes = RunRoutes(kit.client, kit.exposed, authorize=by_user, poll_interval=0.02)
    return Core(routes, str(request.param), loop)


def wait_ended(call: Callable[..., Answer], run_id: str, user: str) -> dict[str, Any]:
    for _ in range(500):
        answer = call("GET", f"/runs/{run_id}/result", user=user)
        if answer.status == 200:
            result: dict[str, Any] = answer.json()
            return result
        assert answer.status == 202, answer
        threading.Event().wait(0.02)
    raise AssertionError(f"run {run_id} did not end")


def check_keys_are_scoped(call: Callable[..., Answer]) -> None:
    """B posting A's key gets a run of its own; A gets its own run back; B never sees A's."""
    start = {"function": "add", "idempotency_key": "order-1"}
    first = call("POST", "/runs", {**start, "data": {"secret": "alice's"}}, user="alice")
    assert first.status == 201, first
    alice_run = first.json()["run_id"]
    again = call("POST", "/runs", {**start, "data": {"secret": "ignored"}}, user="alice")
    assert (again.status, again.json()["run_id"], again.json()["created"]) == (
        200,
        alice_run,
        False,
    )
    other = call("POST", "/runs", {**start, "data": {"secret": "bob's"}}, user="bob")
    assert other.status == 201, other  # a new run, not "created: false" with Alice's id
    bob_run = other.json()["run_id"]
    assert bob_run != alice_run
    assert wait_ended(call, bob_run, "bob")["output"] == {"secret": "bob's", "n": None}
    assert wait_ended(call, alice_run, "alice")["output"] == {"secret": "alice's", "n": None}
    for path in ("", "/result", "/events"):
        assert call("GET", f"/runs/{alice_run}{path}", user="bob").status == 404, path
    again_bob = call("POST", "/runs", {**start, "data": {}}, user="bob")
    assert (again_bob.status, again_bob.json()["run_id"]) == (200, bob_run)


def check_foreign_runs_look_unknown(call: Callable[..., Answer], kit: Kit) -> None:
    """Every run route answers B about A's run exactly as about a run that does not exist."""
    started = call("POST", "/runs", {"function": "hold", "data": {}}, user="alice")
    assert started.status == 201, started
    run_id = started.json()["run_id"]
    unknown_id = unknown_like(run_id)
    routes = [("GET", ""), ("GET", "/result"), ("GET", "/events"), ("POST", "/cancel")]
    for method, rest in routes:
        theirs = call(method, f"/runs/{run_id}{rest}", user="bob")
        nothing = call(method, f"/runs/{unknown_id}{rest}", user="bob")
        same_answer(theirs, nothing, run_id, unknown_id)
    assert not kit.client.get_run_sync(run_id).status().terminal, "B cancelled A's run"
    mine = call("GET", f"/runs/{run_id}", user="alice")
    assert (mine.status, mine.json()["started_by"]) == (200, "alice")
    assert call("GET", f"/runs/{run_id}/result", user="alice").status == 202
    cancelled = call("POST", f"/runs/{run_id}/cancel", user="alice")
    assert (cancelled.status, cancelled.json()["status"]) == (200, "Cancelled")
    # the starter is recorded by the engine: REST and RunInfo show it
    assert kit.rest_run(run_id)["started_by"] == "alice"
    assert kit.client.get_run_sync(run_id).describe().started_by == "alice"


def test_core_scopes_idempotency_keys_to_the_principal(core: Core) -> None:
    check_keys_are_scoped(core)


def test_core_answers_someone_else_s_run_like_an_unknown_one(core: Core, kit: Kit) -> None:
    check_foreign_runs_look_unknown(core, kit)


def test_core_refusals_on_run_routes_do_not_reveal_which_runs_exist(
    kit: Kit, loop: LoopThread
) -> None:
    """authorize answers before anything about the run shows: a refusal is the unknown 404."""
    asked: list[AccessRequest] = []

    def viewers_cannot_cancel(access: AccessRequest) -> bool:
        asked.append(access)
        if "x-user" not in access.request.headers:
            raise AccessDenied("log in first", status=401)
        return not (access.action == "cancel" and access.request.headers["x-user"] == "viewer")

    routes = RunRoutes(kit.client, kit.exposed, authorize=viewers_cannot_cancel)
    for face in ("sync", "async"):
        call = Core(routes, face, loop)
        run_id = call("POST", "/runs", {"function": "hold", "data": {}}, user="staff").json()
        run_id = run_id["run_id"]
        hidden = kit.client.start_sync(kit.hidden).run_id  # exists, but not exposed here
        unknown_id = unknown_like(run_id)
        for rid in (run_id, hidden):
            refused = call("POST", f"/runs/{rid}/cancel", user="viewer")
            nothing = call("POST", f"/runs/{unknown_id}/cancel", user="viewer")
            same_answer(refused, nothing, rid, unknown_id)
        # "log in first" does not depend on the run: the same 401 for every id
        known = call("GET", f"/runs/{run_id}")
        unknown = call("GET", f"/runs/{unknown_id}")
        assert (
            (known.status, known.body)
            == (unknown.status, unknown.body)
            == (
                401,
                b'{"error":"log in first"}',
            )
        )
        assert not kit.client.get_run_sync(run_id).status().terminal
        # asked about the unknown run too, with no function to tell it by
        assert any(a.run_id == unknown_id and a.function_id is None for a in asked)


def test_core_runs_without_a_principal_behave_as_before(kit: Kit, loop: LoopThread) -> None:
    """``allow_all`` (no principal): idempotency keys shared by every caller; owned runs stay
    hidden."""
    public = Core(
        RunRoutes(kit.client, kit.exposed, authorize=stepline.web.allow_all), "sync", loop
    )
    owned = Core(RunRoutes(kit.client, kit.exposed, authorize=by_user), "async", loop)
    start = {"function": "add", "data": {"n": 1}, "idempotency_key": "shared"}
    first = public("POST", "/runs", start)
    second = public("POST", "/runs", start)
    assert (first.status, second.status) == (201, 200)
    run_id = first.json()["run_id"]
    assert second.json()["run_id"] == run_id
    assert wait_ended(public, run_id, "")["started_by"] is None
    assert kit.client.get_run_sync(run_id).describe().started_by is None
    # a run with no starter is anyone's the hook lets through
    assert owned("GET", f"/runs/{run_id}", user="carol").status == 200
    # the same key from a principal is that principal's own run
    carols = owned("POST", "/runs", start, user="carol")
    assert carols.status == 201
    assert carols.json()["run_id"] != run_id
    # and a public kit does not show a principal's run
    carol_run = carols.json()["run_id"]
    same_answer(
        public("GET", f"/runs/{carol_run}"),
        public("GET", f"/runs/{unknown_like(carol_run)}"),
        carol_run,
        unknown_like(carol_run),
    )


def test_core_refuses_an_unusable_principal_as_the_app_s_fault(kit: Kit, loop: LoopThread) -> None:
    def too_long(access: AccessRequest) -> Principal:
        return Principal("x" * 300)

    call = Core(RunRoutes(kit.client, kit.exposed, authorize=too_long), "sync", loop)
    with pytest.raises(stepline.ConfigError, match="1-256 characters"):
        call("POST", "/runs", {"function": "add", "data": {}})
    with pytest.raises(stepline.ConfigError, match="want a str"):
        Principal(42)  # type: ignore[arg-type]

    # a bare string is not a principal: a hook returning one by mistake still refuses
    def says_yes(access: AccessRequest) -> Any:
        return "yes"

    sloppy = Core(RunRoutes(kit.client, kit.exposed, authorize=says_yes), "sync", loop)
    assert sloppy("POST", "/runs", {"function": "add", "data": {}}).status == 403
    assert kit.client.list_runs_sync(function=kit.add)[0] == [], "it started a run"


def test_the_web_kit_s_public_names_are_pinned() -> None:
    assert stepline.web.__all__ == [
        "CSRF_HEADER",
        "AccessDenied",
        "AccessRequest",
        "DurableRoute",
        "Endpoint",
        "Principal",
        "RunRoutes",
        "WebRequest",
        "WebResponse",
        "allow_all",
    ]
    assert stepline.web.Principal.__doc__
    assert stepline.web.CSRF_HEADER == "X-Stepline-Csrf"


def test_client_start_records_the_starter_and_scopes_its_key(kit: Kit) -> None:
    client = kit.client
    a = client.start_sync(kit.hold, idempotency_key="k", started_by="alice")
    a_again = client.start_sync(kit.hold, idempotency_key="k", started_by="alice")
    b = client.start_sync(kit.hold, idempotency_key="k", started_by="bob")
    anyone = client.start_sync(kit.hold, idempotency_key="k")
    assert (a.created, a_again.created, b.created, anyone.created) == (True, False, True, True)
    assert a_again.run_id == a.run_id
    assert len({a.run_id, b.run_id, anyone.run_id}) == 3
    assert [h.describe().started_by for h in (a, b, anyone)] == ["alice", "bob", None]
    listed = {run.run_id: run.started_by for run in client.list_runs_sync(function=kit.hold)[0]}
    assert listed == {a.run_id: "alice", b.run_id: "bob", anyone.run_id: None}
