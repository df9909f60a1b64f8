"""The web kit's routes, one contract over every framework and every way to reach it.

Each check runs on every variant of ``kit_harness.VARIANTS``: FastAPI and the bare ASGI
app (Starlette's ``TestClient`` and uvicorn), Flask (its test client and werkzeug),
Tornado (``AsyncHTTPTestCase`` and a real ``HTTPServer``) and Django (``Client`` and
WSGI for its sync views, ``AsyncClient`` and uvicorn for its async views); sync and async
``authorize`` hooks in turn. The routes live under ``/api``, mounted by the framework or
by the factory's ``prefix=``. What is particular to one framework stays in its own file.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stepline
import stepline.web
from stepline._api import runs as _runs

from .kit_harness import CSRF, JSON, VARIANTS, WAIT, Answer, Kit, Web, make_kit, open_web

ALICE = {"x-user": "alice"}
RUN_ROUTES = [("GET", ""), ("POST", "/cancel"), ("GET", "/result"), ("GET", "/events")]


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(tmp_path)
    try:
        yield made
    finally:
        try:  # end held runs, so that no events stream outlives the test
            live, _ = made.client.list_runs_sync(status=["Queued", "Running"])
            for run in live:
                made.client.get_run_sync(run.run_id).cancel()
        finally:
            made.engine.stop()


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def web(variant: str, kit: Kit) -> Iterator[Web]:
    with open_web(variant, kit) as made:
        yield made


def start(web: Web, function: str, data: Any, user: dict[str, str] = ALICE, **more: Any) -> Answer:
    return web.request("POST", "/api/runs", {"function": function, "data": data, **more}, user)


def run_id_of(answer: Answer) -> str:
    assert answer.status == 201, answer.body
    run_id: str = answer.json["run_id"]
    return run_id


def step_a_done(kind: str, data: Any) -> bool:
    return kind == "step" and (data["name"], data["status"]) == ("a", "Completed")


# -- start, events, result, status ----------------------------------------------------------


def test_start_then_events_then_result(web: Web, kit: Kit, variant: str) -> None:
    reply = start(web, "add", {"x": 41})
    run_id = run_id_of(reply)
    started = reply.json
    assert (started["function_id"], started["created"]) == ("kit-add", True)
    links = started["links"]
    assert links == {
        "self": f"/api/runs/{run_id}",
        "cancel": f"/api/runs/{run_id}/cancel",
        "result": f"/api/runs/{run_id}/result",
        "events": f"/api/runs/{run_id}/events",
    }
    stream = web.events(links["events"], ALICE)
    assert stream.status == 200
    assert stream.content_type.startswith("text/event-stream")
    kinds = [kind for kind, _ in stream.events]
    assert (kinds[0], kinds[-1], kinds.count("result")) == ("status", "result", 1)
    steps = [data for kind, data in stream.events if kind == "step"]
    assert list(dict.fromkeys(step["name"] for step in steps)) == ["a", "nap", "b"]
    outputs = {step["name"]: step["output"] for step in steps if step["status"] == "Completed"}
    assert (outputs["a"], outputs["b"]) == (41, 42)
    assert "nap" in outputs
    assert (stream.events[-1][1]["status"], stream.events[-1][1]["output"]) == ("Completed", 42)

    result = web.request("GET", f"{links['result']}?wait=10", headers=ALICE)
    assert (result.status, result.json["output"], result.json["status"]) == (200, 42, "Completed")
    status = web.request("GET", links["self"], headers=ALICE)
    assert (status.status, status.json["status"]) == (200, "Completed")
    assert "etag" not in status.headers

    # authorize saw each request once, with the framework's own request object
    asked = [seen.access for seen in kit.seen]
    assert [(a.action, a.function_id) for a in asked] == [
        ("start", "kit-add"),
        ("events", "kit-add"),
        ("result", "kit-add"),
        ("status", "kit-add"),
    ]
    assert asked[0].data == {"x": 41}
    assert asked[0].run_id is None
    assert {a.run_id for a in asked[1:]} == {run_id}
    assert all(isinstance(a.request, VARIANTS[variant].request_type) for a in asked)
    if not VARIANTS[variant].hook_may_run_on_loop:  # Django: a sync hook may use the ORM
        assert not any(seen.on_loop for seen in kit.seen)


def test_a_live_stream_then_cancel(web: Web, kit: Kit) -> None:
    run_id = run_id_of(start(web, "hold", {}))
    url = f"/api/runs/{run_id}"
    if web.live:  # live progress: step a is streamed while the run still holds (no result yet)
        before = web.events(f"{url}/events", ALICE, until=step_a_done)
        assert step_a_done(*before.events[-1])
        assert "result" not in [kind for kind, _ in before.events]
    pending = web.request("GET", f"{url}/result", headers=ALICE)
    assert pending.status == 202
    assert pending.headers["retry-after"] == "1"
    assert pending.json["status"] in ("Queued", "Running")
    assert web.request("GET", f"{url}/cancel", headers=ALICE).status == 405

    if web.concurrent:  # cancel while a reader follows: its stream ends with the run
        ready = threading.Event()

        def until(kind: str, data: Any) -> bool:
            if step_a_done(kind, data):
                ready.set()
            return kind == "result"

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            following = pool.submit(web.events, f"{url}/events", ALICE, until)
            assert ready.wait(30), "no step event for 'a'"
            cancelled = web.request("POST", f"{url}/cancel", headers={**ALICE, **CSRF})
            after = following.result(timeout=30).events
    else:
        cancelled = web.request("POST", f"{url}/cancel", headers={**ALICE, **CSRF})
        after = web.events(f"{url}/events", ALICE).events
    assert (cancelled.status, cancelled.json) == (200, {"run_id": run_id, "status": "Cancelled"})
    assert after[-1][0] == "result"
    assert after[-1][1]["status"] == "Cancelled"
    assert web.request("GET", url, headers=ALICE).json["status"] == "Cancelled"
    result = web.request("GET", f"{url}/result?wait=10", headers=ALICE)
    assert (result.status, result.json["status"]) == (200, "Cancelled")


def test_unknown_runs_and_routes(web: Web, variant: str) -> None:
    for method, rest in RUN_ROUTES:
        reply = web.request(method, f"/api/runs/01NOSUCHRUN{rest}", headers={**ALICE, **CSRF})
        assert (reply.status, reply.json) == (404, {"error": "run 01NOSUCHRUN not found"}), rest
    for route in ("/api/runs/01NOSUCHRUN/nothing", "/api/runs/a.b"):
        assert web.request("GET", route, headers=ALICE).status == 404, route
    # a wrong method: the kit's answer where it routes methods itself, else the framework's
    framework = VARIANTS[variant].framework
    listing = web.request("GET", "/api/runs", headers=ALICE)
    deleting = web.request("DELETE", "/api/runs/abc", headers=ALICE)
    assert (listing.status, deleting.status) == (405, 405)
    if framework == "fastapi":
        assert listing.json == deleting.json == {"detail": "Method Not Allowed"}
    else:
        assert listing.json == {"error": "GET not allowed on /runs; use POST"}
    if framework in ("asgi", "django", "tornado"):
        assert deleting.json == {"error": "DELETE not allowed on /runs/abc; use GET"}


# -- authorization and ownership -----------------------------------------------------------


@pytest.mark.slow
def test_authorize_refuses_and_refusals_reveal_no_run(web: Web, kit: Kit) -> None:
    body = {"function": "add", "data": {"x": 1}}
    missing = web.request("POST", "/api/runs", body)
    assert (missing.status, missing.json) == (401, {"error": "log in first"})
    wrong = web.request("POST", "/api/runs", body, {"x-user": "intruder"})
    assert (wrong.status, wrong.json) == (403, {"error": "forbidden"})
    assert kit.client.list_runs_sync(function=kit.add)[0] == [], "a refused start started a run"

    run_id = run_id_of(start(web, "hold", {}))
    kit.seen.clear()
    for method, rest in RUN_ROUTES:
        url = f"/api/runs/{run_id}{rest}"
        anonymous = web.request(method, url, headers=CSRF)
        assert (anonymous.status, anonymous.json) == (401, {"error": "log in first"}), rest
        # refused on a run route: the unknown run's 404, so refusals reveal no run ids
        refused = web.request(method, url, headers={"x-user": "intruder", **CSRF})
        assert (refused.status, refused.json) == (404, {"error": f"run {run_id} not found"}), rest
    asked = {(seen.access.action, seen.access.run_id) for seen in kit.seen}
    assert asked == {(name, run_id) for name in ("status", "cancel", "result", "events")}

    # a viewer may look, not cancel; the refusal is the unknown run's 404 again
    viewer = {"x-user": "viewer", **CSRF}
    assert web.request("GET", f"/api/runs/{run_id}", headers=viewer).status == 404  # not theirs
    assert not kit.client.get_run_sync(run_id).status().terminal


def test_a_viewer_may_look_but_not_cancel(web: Web, kit: Kit) -> None:
    viewer = {"x-user": "viewer", **CSRF}
    run_id = run_id_of(start(web, "hold", {}, user=viewer))
    assert web.request("GET", f"/api/runs/{run_id}", headers=viewer).status == 200
    refused = web.request("POST", f"/api/runs/{run_id}/cancel", headers=viewer)
    assert (refused.status, refused.json) == (404, {"error": f"run {run_id} not found"})
    assert not kit.client.get_run_sync(run_id).status().terminal


@pytest.mark.slow
def test_someone_else_s_run_looks_unknown(web: Web, kit: Kit) -> None:
    """Every run route answers B about A's run byte for byte as about no run at all."""
    run_id = run_id_of(start(web, "hold", {}))
    unknown_id = run_id[:-1] + ("0" if run_id[-1] != "0" else "1")
    bob = {"x-user": "bob", **CSRF}
    for method, rest in RUN_ROUTES:
        theirs = web.request(method, f"/api/runs/{run_id}{rest}", headers=bob)
        nothing = web.request(method, f"/api/runs/{unknown_id}{rest}", headers=bob)
        assert theirs.status == nothing.status == 404, rest
        assert theirs.headers["content-type"] == nothing.headers["content-type"]
        assert theirs.body == nothing.body.replace(unknown_id.encode(), run_id.encode())
        assert theirs.json == {"error": f"run {run_id} not found"}
    assert not kit.client.get_run_sync(run_id).status().terminal, "B cancelled A's run"
    mine = web.request("GET", f"/api/runs/{run_id}", headers=ALICE)
    assert (mine.status, mine.json["started_by"]) == (200, "alice")
    cancelled = web.request("POST", f"/api/runs/{run_id}/cancel", headers={**ALICE, **CSRF})
    assert (cancelled.status, cancelled.json["status"]) == (200, "Cancelled")
    # the starter is recorded by the engine: REST and RunInfo show it
    flow = _runs.call(kit.client.settings, "GET", f"/v1/runs/{run_id}", what=run_id)
    assert kit.client.connection.run_sync(flow)["started_by"] == "alice"
    assert kit.client.get_run_sync(run_id).describe().started_by == "alice"


@pytest.mark.slow
def test_idempotency_keys_are_scoped_to_the_principal(web: Web) -> None:
    first = start(web, "add", {"x": 1}, idempotency_key="order-7")
    again = start(web, "add", {"x": 2}, idempotency_key="order-7")
    other = start(web, "add", {"x": 3}, idempotency_key="order-8")
    bobs = start(web, "add", {"x": 10}, user={"x-user": "bob"}, idempotency_key="order-7")
    assert [a.status for a in (first, again, other, bobs)] == [201, 200, 201, 201]
    alice_run = first.json["run_id"]
    assert (again.json["run_id"], again.json["created"]) == (alice_run, False)
    assert other.json["run_id"] != alice_run
    bob_run = bobs.json["run_id"]  # a run of Bob's own, never Alice's id
    assert bob_run != alice_run
    bob = {"x-user": "bob"}
    result = web.request("GET", f"/api/runs/{alice_run}/result?wait=10", headers=ALICE)
    assert result.json["output"] == 2  # the first start's data: the second started nothing
    bob_result = web.request("GET", f"/api/runs/{bob_run}/result?wait=10", headers=bob)
    assert bob_result.json["output"] == 11
    for rest in ("", "/result", "/events"):
        assert web.request("GET", f"/api/runs/{alice_run}{rest}", headers=bob).status == 404
    bob_again = start(web, "add", {"x": 5}, user=bob, idempotency_key="order-7")
    assert (bob_again.status, bob_again.json["run_id"]) == (200, bob_run)


def test_functions_not_exposed_stay_hidden(web: Web, kit: Kit) -> None:
    refused = start(web, "hidden", {})
    assert (refused.status, refused.json) == (
        404,
        {"error": "function 'hidden' cannot be started here"},
    )
    hidden = kit.client.start_sync(kit.hidden, {}, started_by="alice")
    for method, rest in RUN_ROUTES:
        reply = web.request(method, f"/api/runs/{hidden.run_id}{rest}", headers={**ALICE, **CSRF})
        assert (reply.status, reply.json) == (404, {"error": f"run {hidden.run_id} not found"})
    assert not hidden.status().terminal
    # authorize decides a start before the function is looked up; on a run route it is
    # asked whether or not the run is shown here, and never told a hidden run's function
    assert [(seen.access.action, seen.access.function_id) for seen in kit.seen] == [
        ("start", "hidden"),
        *((action, None) for action in ("status", "cancel", "result", "events")),
    ]


# -- what a start must be ------------------------------------------------------------------


@pytest.mark.slow
def test_invalid_starts_are_clear_refusals(web: Web, kit: Kit) -> None:
    invalid = start(web, "add", {"x": "forty"})
    assert invalid.status == 422
    assert invalid.json["error"] == "data does not match the function's input"
    [problem] = invalid.json["detail"]
    assert (problem["loc"], problem["type"]) == (["x"], "int_parsing")
    missing = start(web, "add", {})
    assert (missing.status, missing.json["detail"][0]["type"]) == (422, "missing")
    broken = web.request("POST", "/api/runs", b"{nope", {**ALICE, **JSON})
    assert broken.status == 400
    assert broken.json["error"].startswith("body is not valid JSON")
    nameless = web.request("POST", "/api/runs", {"data": {}}, ALICE)
    assert (nameless.status, nameless.json["error"]) == (
        400,
        "function: want the id of the function to start",
    )
    listed = start(web, "hold", [1, 2])
    assert (listed.status, listed.json["error"]) == (400, "data: want a JSON object, got list")
    assert start(web, "hold", {}, idempotency_key="").status == 400
    huge = web.request("POST", "/api/runs", b" " * (1024 * 1024 + 10), {**ALICE, **JSON})
    assert huge.status == 413
    assert kit.client.list_runs_sync(function=kit.add)[0] == []
    assert kit.client.list_runs_sync(function=kit.hold)[0] == []

    run_id = run_id_of(start(web, "hold", {}))
    bad_wait = web.request("GET", f"/api/runs/{run_id}/result?wait=forever", headers=ALICE)
    assert (bad_wait.status, bad_wait.json) == (400, {"error": "wait: want seconds from 0 to 60"})


# -- cross-site requests and hostile JSON ----------------------------------------------------


class Hook:
    """An authorize hook letting everything through, recording what it was asked."""

    def __init__(self) -> None:
        self.asked: list[stepline.web.AccessRequest] = []

    def __call__(self, access: stepline.web.AccessRequest) -> bool:
        self.asked.append(access)
        return True


def start_body(function: str = "hold", data: str = "{}") -> bytes:
    return f'{{"function": "{function}", "data": {data}}}'.encode()


@pytest.mark.slow
def test_cross_site_simple_starts_are_refused_and_start_nothing(variant: str, kit: Kit) -> None:
    """A page elsewhere can POST a form, text or a typeless body without a preflight."""
    hook = Hook()
    with open_web(variant, kit, authorize=hook) as web:
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            refused = web.request("POST", "/api/runs", start_body(), {"content-type": kind})
            assert refused.status == 415, (kind, refused.body)
            assert "application/json" in refused.json["error"]
            assert "X-Stepline-Csrf" in refused.json["error"]
        if web.typeless_body:  # fetch() with a Blob
            typeless = web.request("POST", "/api/runs", start_body(), {})
            assert typeless.status == 403, typeless.body
            assert "X-Stepline-Csrf: 1" in typeless.json["error"]
    assert hook.asked == [], "authorize ran for a refused cross-site request"
    assert kit.client.list_runs_sync(function=kit.hold)[0] == [], "a refused request started a run"


@pytest.mark.slow
def test_json_or_the_header_are_accepted(variant: str, kit: Kit) -> None:
    with open_web(variant, kit, authorize=Hook()) as web:
        for headers in (JSON, {"content-type": "application/json; charset=utf-8"}):
            assert web.request("POST", "/api/runs", start_body(), headers).status == 201
        # the header needs a preflight, as JSON does
        with_header = {"content-type": "text/plain", **CSRF}
        assert web.request("POST", "/api/runs", start_body(), with_header).status == 201
    assert len(kit.client.list_runs_sync(function=kit.hold)[0]) == 3


@pytest.mark.slow
def test_a_body_less_cancel_needs_the_header(variant: str, kit: Kit) -> None:
    with open_web(variant, kit, authorize=Hook()) as web:
        run_id = run_id_of(web.request("POST", "/api/runs", start_body(), JSON))
        cancel = f"/api/runs/{run_id}/cancel"
        bare = web.request("POST", cancel, None, {})
        # where the client or server names a type for no body, the type is refused (415)
        assert bare.status == (415 if web.types_a_bodiless_post else 403), bare.body
        assert "X-Stepline-Csrf: 1" in bare.json["error"]
        texted = web.request("POST", cancel, b"x", {"content-type": "text/plain"})
        assert texted.status == 415, texted.body
        assert not kit.client.get_run_sync(run_id).status().terminal, "a refused cancel cancelled"
        done = web.request("POST", cancel, None, CSRF)
        assert (done.status, done.json) == (200, {"run_id": run_id, "status": "Cancelled"})


HOSTILE = {
    "nested": b"[" * 100_000,
    "nested-data": start_body(data='{"x": ' + "[" * 5000 + "]" * 5000 + "}"),
    "nan": start_body(data='{"x": NaN}'),
    "infinity": start_body(data='{"x": -Infinity}'),
    "huge-float": start_body(data='{"x": 1e400}'),
    "huge-int": start_body(data='{"x": ' + "7" * 5000 + "}"),
    "lone-surrogate": start_body(data='{"x": "\\ud800"}'),
}


def test_hostile_json_is_a_400_before_authorize(variant: str, kit: Kit) -> None:
    hook = Hook()
    with open_web(variant, kit, authorize=hook) as web:
        for name, raw in HOSTILE.items():
            reply = web.request("POST", "/api/runs", raw, JSON)
            assert reply.status == 400, (name, reply.body)
            assert reply.json["error"].startswith("body is not valid JSON"), name
            assert len(reply.json["error"]) < 300, name
    assert hook.asked == [], "authorize ran on a malformed body"
    assert kit.client.list_runs_sync(function=kit.hold)[0] == []


# -- options ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_options_reach_the_routes(variant: str, kit: Kit) -> None:
    """``result_wait`` bounds ``?wait=``; the mount and ``prefix=`` add up in the links."""
    with open_web(variant, kit, result_wait=2.0) as web:
        run_id = run_id_of(start(web, "hold", {}))
        too_long = web.request("GET", f"/api/runs/{run_id}/result?wait=3", headers=ALICE)
        assert (too_long.status, too_long.json) == (
            400,
            {"error": "wait: want seconds from 0 to 2"},
        )
        held = web.request("GET", f"/api/runs/{run_id}/result?wait=0.2", headers=ALICE)
        assert held.status == 202


# -- approvals: a durable agent's tool call waiting for its run's starter ---------------------


def pending_approval(web: Web, user: dict[str, str] = ALICE) -> dict[str, Any]:
    """The caller's one pending approval, once the run asks for it."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        listed = web.request("GET", "/api/approvals", headers=user)
        assert listed.status == 200, listed.body
        if listed.json["approvals"]:
            [approval] = listed.json["approvals"]
            return dict(approval)
        time.sleep(0.05)
    raise AssertionError("no approval became pending")


@pytest.mark.slow
def test_approvals_are_shown_and_answered_to_their_runs_starter_only(web: Web, kit: Kit) -> None:
    run_id = run_id_of(start(web, "ask", {}))
    approval = pending_approval(web)
    approval_id = approval["approval_id"]
    assert (approval["run_id"], approval["function_id"], approval["status"]) == (
        run_id,
        "kit-ask",
        "pending",
    )
    assert (approval["tool"], approval["args"]) == ("refund", {"cents": 500})
    assert approval["schema"]["properties"]["cents"]["type"] == "integer"
    base = f"/api/approvals/{approval_id}"
    assert approval["links"] == {
        "self": base,
        "approve": f"{base}/approve",
        "reject": f"{base}/reject",
        "run": f"/api/runs/{run_id}",
    }
    shown = web.request("GET", base, headers=ALICE)
    assert (shown.status, shown.json["approval_id"]) == (200, approval_id)

    # another caller sees none, and what they send about it is the unknown approval's 404
    unknown_id = approval_id[:-1] + ("0" if approval_id[-1] != "0" else "1")
    bob = {"x-user": "bob", **CSRF}
    assert web.request("GET", "/api/approvals", headers=bob).json == {"approvals": []}
    for method, rest, body in (
        ("GET", "", None),
        ("POST", "/approve", {}),
        ("POST", "/reject", {}),
    ):
        for user in (bob, {"x-user": "intruder", **CSRF}):  # not theirs; refused by authorize
            theirs = web.request(method, f"{base}{rest}", body, user)
            nothing = web.request(method, f"/api/approvals/{unknown_id}{rest}", body, user)
            assert theirs.status == nothing.status == 404, (rest, user)
            assert theirs.json == {"error": f"approval {approval_id} not found"}
            assert theirs.body == nothing.body.replace(unknown_id.encode(), approval_id.encode())
        anonymous = web.request(method, f"{base}{rest}", body, CSRF)
        assert (anonymous.status, anonymous.json) == (401, {"error": "log in first"})
    assert web.request("GET", "/api/approvals", headers=CSRF).status == 401
    assert web.request("GET", f"{base}/approve", headers=ALICE).status == 405
    assert kit.client.get_approval_sync(approval_id).status == "pending", "bob decided"

    # the starter decides: arguments checked against the tool's schema, then kept
    mine = {**ALICE, **CSRF}
    wrong = web.request("POST", f"{base}/approve", {"args": {"cents": "all"}}, mine)
    assert wrong.status == 400
    assert wrong.json["error"] == (
        "args do not match the tool's arguments: $.cents: want integer, got string"
    )
    malformed = web.request("POST", f"{base}/approve", {"args": [1]}, mine)
    assert malformed.status == 400
    approved = web.request("POST", f"{base}/approve", {"args": {"cents": 300}}, mine)
    assert approved.status == 200, approved.body
    decision = approved.json["decision"]
    assert (approved.json["status"], decision["by"], decision["args"]) == (
        "approved",
        "alice",
        {"cents": 300},
    )
    result = web.request("GET", f"/api/runs/{run_id}/result?wait=10", headers=ALICE)
    assert (result.status, result.json["output"]) == (200, "tool said: refunded 300")
    again = web.request("POST", f"{base}/reject", {"reason": "too late"}, mine)
    assert (again.status, again.json) == (
        409,
        {"error": f"approval {approval_id} was decided already"},
    )
    decided = web.request("GET", base, headers=ALICE).json
    assert (decided["status"], decided["decision"]["by"]) == ("approved", "alice")

    asked = [(s.access.action, s.access.run_id, s.access.function_id) for s in kit.seen]
    assert ("approvals", None, None) in asked
    assert ("approve", run_id, "kit-ask") in asked
    assert ("approval", None, None) in asked  # the unknown approval: asked all the same


@pytest.mark.slow
def test_a_rejection_reaches_the_model_with_its_reason(web: Web, kit: Kit) -> None:
    run_id = run_id_of(start(web, "ask", {}))
    approval = pending_approval(web)
    rejected = web.request(
        "POST", approval["links"]["reject"], {"reason": "over the limit"}, {**ALICE, **CSRF}
    )
    assert rejected.status == 200, rejected.body
    assert rejected.json["decision"]["reason"] == "over the limit"
    result = web.request("GET", f"/api/runs/{run_id}/result?wait=10", headers=ALICE)
    assert result.json["output"] == "tool said: over the limit"


@pytest.mark.slow
def test_cross_site_decisions_are_refused_and_decide_nothing(variant: str, kit: Kit) -> None:
    """A page elsewhere cannot approve with the user's cookies: the kit's CSRF rule."""
    with open_web(variant, kit) as web:
        run_id_of(start(web, "ask", {}))
        approval = pending_approval(web)
        kit.seen.clear()
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            refused = web.request(
                "POST", approval["links"]["approve"], b"{}", {**ALICE, "content-type": kind}
            )
            assert refused.status == 415, (kind, refused.body)
        if web.typeless_body:
            typeless = web.request("POST", approval["links"]["approve"], b"{}", ALICE)
            assert typeless.status == 403, typeless.body
        assert kit.seen == [], "authorize ran for a refused cross-site request"
        assert kit.client.get_approval_sync(approval["approval_id"]).status == "pending"
