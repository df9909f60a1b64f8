"""Roles on a production engine with real runs: a viewer never receives a payload, on any
route, and the audit log records who did what (refusals too), with the right principal.

The app's runs carry secrets in every kind of payload: the trigger event's data, a step's
output, the run's output, an error's message and a published stream message. Every GET
route a session may use is asked as a viewer with the runs' real ids filled in, and no
answer may hold any secret; an operator's answers do (so the check can fail).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import stepline
from stepline._protocol import signing
from stepline._serving import access
from stepline._serving.access import Credential, Role, Route
from stepline.embedded import EmbeddedEngine
from stepline.engine._http.dashboard import COOKIE, CSRF_HEADER
from stepline.engine._users import DashboardUser
from tests._support.databases import STORES, database

pytestmark = pytest.mark.timeout(120)

SIGNING_KEY = "signkey-prod-" + "5ec2" * 16
EVENT_KEY = "roles-event-key"
USERS = tuple(DashboardUser(f"rita-{r.value}", r, f"{r.value}-secret-key-0123") for r in Role)
#: one secret per kind of payload
SECRETS = {
    "event data": "s3cr3t-event-data",
    "step output": "s3cr3t-step-output",
    "run output": "s3cr3t-run-output",
    "error message": "s3cr3t-error-message",
    "stream message": "s3cr3t-stream-message",
}


@dataclasses.dataclass
class Site:
    http: TestClient
    client: stepline.Client
    functions: list[stepline.Function]
    ok_run: str
    failed_run: str
    event_id: str
    sessions: dict[Role, str]

    def get(self, url: str, role: Role | None) -> Any:
        """``GET url`` as ``role``'s session (None: with the signing key)."""
        if role is None:
            headers = {"authorization": signing.bearer_token(SIGNING_KEY)}
        else:
            headers = {"cookie": f"{COOKIE}={self.sessions[role]}"}
        return self.http.get(url, headers=headers)

    def post(self, url: str, role: Role, **headers: str) -> Any:
        cookie = f"{COOKIE}={self.sessions[role]}"
        headers = {"cookie": cookie, CSRF_HEADER: "1", "sec-fetch-site": "same-origin", **headers}
        return self.http.post(url, headers=headers, json={})


def _app(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="leaky", trigger=stepline.TriggerEvent(event="roles/leaky"))
    async def leaky(ctx: stepline.Context) -> str:
        await ctx.step.run("out", lambda: {"value": SECRETS["step output"]})
        await ctx.step.publish("news", topic="news", data={"said": SECRETS["stream message"]})
        return SECRETS["run output"]

    @client.function(id="failing", trigger=stepline.TriggerEvent(event="roles/failing"), retries=0)
    async def failing(ctx: stepline.Context) -> None:
        def boom() -> None:
            raise ValueError(SECRETS["error message"])

        await ctx.step.run("boom", boom)

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="roles/hold"))
    async def hold(ctx: stepline.Context) -> None:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))

    return [leaky, failing, hold]


def _wait_ended(client: stepline.Client, run_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get_run_sync(run_id).status().terminal:
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


@pytest.fixture(scope="module", params=STORES)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    with database(request.param, tmp_path_factory.mktemp("roles")) as db:
        yield from _site(db)


def _site(db: str) -> Iterator[Site]:
    client = stepline.Client(
        "roles", is_production=True, signing_key=SIGNING_KEY, event_key=EVENT_KEY, environ={}
    )
    functions = _app(client)
    embedded = EmbeddedEngine(
        client,
        functions,
        database=db,
        expose_api=True,
        poll_interval=0.05,
        retry_scale=0.0,
        dashboard_users=USERS,
    )
    try:
        data = {"token": SECRETS["event data"]}
        ok_run = client.start_sync(functions[0], data).run_id
        failed_run = client.start_sync(functions[1], data).run_id
        _wait_ended(client, ok_run)
        _wait_ended(client, failed_run)
        # the mount has no lifespan: the embedded engine runs already
        http = TestClient(embedded.asgi_app(), base_url="http://127.0.0.1")
        if True:
            sessions: dict[Role, str] = {}
            for user in USERS:
                answer = http.post("/login", data={"key": user.key}, follow_redirects=False)
                assert answer.status_code == 303, answer.text
                sessions[user.role] = answer.cookies[COOKIE]
                http.cookies.clear()
            run = http.get(
                f"/v1/runs/{ok_run}", headers={"authorization": signing.bearer_token(SIGNING_KEY)}
            ).json()["data"]
            yield Site(http, client, functions, ok_run, failed_run, run["event_ids"][0], sessions)
    finally:
        embedded.stop()


def _urls(row: Route, site: Site) -> list[str]:
    """``row``'s path with the seeded runs' ids (once per run where a run id is asked)."""
    values = {
        "event_id": site.event_id,
        "function_id": "roles-leaky",
        "app_id": "roles",
        "conversation_id": "none",
        "budget": "none",
        "bulk_id": "none",
        "approval_id": "none",
        "name": "none",
        "env_id": "none",
    }
    urls = []
    for run_id in (site.ok_run, site.failed_run):
        out, rest = "", row.path
        while "{" in rest:
            before, _, after = rest.partition("{")
            name, _, rest = after.partition("}")
            name = name.split(":")[0]
            out += before + (run_id if name == "run_id" else values.get(name, "none"))
        urls.append(out + rest)
        if "{run_id}" not in row.path:
            break
    if row.path == "/v1/token-budgets/{budget}":
        urls = [f"{urls[0]}?period=3600&key=k"]
    if row.path == "/v1/runs":
        urls += [f"/v1/runs?function_id={f}" for f in ("roles-leaky", "roles-failing")]
    if row.path == "/v1/events":  # the list, the stream with each event's runs, a search
        urls += ["/v1/events?runs=true&internal=true", "/v1/events?after=0:&runs=true"]
    return urls


GET_ROWS = [
    row for row in access.ENGINE if row.method == "GET" and Credential.SESSION in row.accepts
]


def _leaks(text: str) -> list[str]:
    return [kind for kind, secret in SECRETS.items() if secret in text]


def test_a_viewer_never_receives_a_payload_on_any_get_route(site: Site) -> None:
    seen_by_operator: set[str] = set()
    for row in GET_ROWS:
        for url in _urls(row, site):
            viewer = site.get(url, Role.VIEWER)
            assert viewer.status_code not in (400, 401), (url, viewer.text)
            assert not _leaks(viewer.text), (url, _leaks(viewer.text), viewer.text[:500])
            if not Role.VIEWER.allows(row.role):
                assert viewer.status_code == 403, (url, viewer.status_code)
            operator = site.get(url, Role.OPERATOR)
            if operator.status_code == 200 and "stream" not in url:
                seen_by_operator |= set(_leaks(operator.text))
    # the same routes hand an operator every payload: the viewer's answers were redacted
    assert seen_by_operator >= {"event data", "step output", "run output", "error message"}


def test_the_dashboards_pages_hold_no_payload_for_a_viewer(site: Site) -> None:
    shell = site.get("/", Role.VIEWER)
    assert shell.status_code == 200
    assert 'data-role="viewer"' in shell.text
    assert "rita-viewer" in shell.text
    assert not _leaks(shell.text)


def test_a_viewer_reads_a_run_with_markers_where_its_payloads_were(site: Site) -> None:
    run = site.get(f"/v1/runs/{site.ok_run}", Role.VIEWER).json()["data"]
    assert run["output"] == {"redacted": "viewer"}
    assert run["events"] == {"redacted": "viewer"}
    assert run["status"] == "Completed"  # what is no payload stays
    steps = site.get(f"/v1/runs/{site.failed_run}/steps", Role.VIEWER).json()["data"]
    errors = [s["error"] for s in steps if "error" in s]
    assert errors
    assert all(e.get("redacted") == "viewer" for e in errors), errors
    failed = site.get(f"/v1/runs/{site.failed_run}", Role.VIEWER).json()["data"]
    assert failed["output"] == {"redacted": "viewer"}


def test_a_viewers_search_over_event_payloads_is_refused(site: Site) -> None:
    expression = f'event.data.token == "{SECRETS["event data"]}"'
    url = f"/v1/events?expression={expression}"
    refused = site.get(url, Role.VIEWER)
    assert refused.status_code == 403, refused.text
    assert "operator role" in refused.json()["error"]
    assert site.get(url, Role.OPERATOR).status_code == 200


def test_a_viewers_run_query_over_payloads_is_refused(site: Site) -> None:
    for query in ('output == "x"', 'event.data.token == "x"', "size(events) > 0"):
        refused = site.get(f"/v1/runs?query={query}", Role.VIEWER)
        assert refused.status_code == 403, (query, refused.text)
        assert site.get(f"/v1/runs?query={query}", Role.OPERATOR).status_code == 200, query
    allowed = site.get('/v1/runs?query=status == "Failed"', Role.VIEWER)
    assert allowed.status_code == 200, allowed.text
    assert [r["run_id"] for r in allowed.json()["data"]] == [site.failed_run]


def test_the_stream_and_the_export_are_refused_to_a_viewer(site: Site) -> None:
    for url in (f"/v1/runs/{site.ok_run}/stream", f"/v1/runs/{site.ok_run}/export"):
        answer = site.get(url, Role.VIEWER)
        assert answer.status_code == 403, (url, answer.text)
        assert not _leaks(answer.text)


# -- the audit log ----------------------------------------------------------------------------


def _audit(site: Site, **query: str) -> list[dict[str, Any]]:
    answer = site.get("/v1/audit?" + "&".join(f"{k}={v}" for k, v in query.items()), None)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def test_each_action_is_audited_with_its_principal_and_refusals_as_refused(site: Site) -> None:
    run_id = site.client.start_sync(site.functions[2], {}).run_id
    cancelled = site.post(f"/v1/runs/{run_id}/cancel", Role.OPERATOR)
    assert cancelled.status_code == 200, cancelled.text
    paused = site.post("/v1/functions/roles-leaky/pause", Role.OPERATOR)
    assert paused.status_code == 403
    viewer_cancel = site.post(f"/v1/runs/{run_id}/cancel", Role.VIEWER)
    assert viewer_cancel.status_code == 403
    entries = _audit(site)
    by_action = [(e["principal"], e["role"], e["action"], e["outcome"]) for e in entries]
    assert (
        "rita-operator",
        "operator",
        "POST /v1/runs/{run_id}/cancel",
        "ok",
    ) in by_action
    assert (
        "rita-operator",
        "operator",
        "POST /v1/functions/{function_id:path}/pause",
        "refused",
    ) in by_action
    assert ("rita-viewer", "viewer", "POST /v1/runs/{run_id}/cancel", "refused") in by_action
    [cancel] = [
        e for e in entries if e["principal"] == "rita-operator" and e["action"].endswith("cancel")
    ]
    assert cancel["target"] == f"run_id={run_id}"
    assert cancel["credential"] == Credential.SESSION.value
    assert cancel["at"]
    # sign-ins are recorded too
    assert {("rita-viewer", "sign-in", "ok")} <= {
        (e["principal"], e["action"], e["outcome"]) for e in entries
    }
    # one principal's entries
    mine = _audit(site, principal="rita-viewer")
    assert mine
    assert {e["principal"] for e in mine} == {"rita-viewer"}


def test_a_refused_sign_in_is_audited(site: Site) -> None:
    answer = site.http.post(
        "/login", data={"key": "not-anyones-key-at-all"}, follow_redirects=False
    )
    assert answer.status_code == 303
    refused = [e for e in _audit(site) if e["action"] == "sign-in" and e["outcome"] == "refused"]
    assert refused
    assert refused[0]["principal"] == "anonymous"


def test_only_the_signing_key_may_name_whom_it_acts_for(site: Site) -> None:
    """The Django admin's calls carry its user's name: recorded from the signing key, and
    ignored from a session, which cannot pass for someone else."""
    run_id = site.client.start_sync(site.functions[2], {}).run_id
    bearer = signing.bearer_token(SIGNING_KEY)
    answer = site.http.post(
        f"/v1/runs/{run_id}/cancel",
        headers={"authorization": bearer, "x-stepline-actor": "django:alice"},
        json={},
    )
    assert answer.status_code in (200, 409), answer.text
    forged = site.post(f"/v1/runs/{run_id}/cancel", Role.OPERATOR, **{"x-stepline-actor": "boss"})
    assert forged.status_code in (200, 409), forged.text
    entries = [e for e in _audit(site) if e["target"] == f"run_id={run_id}"]
    names = {(e["principal"], e["via"]) for e in entries}
    assert ("django:alice", "signing-key") in names
    assert ("rita-operator", None) in names
    assert not any(e["principal"] == "boss" for e in _audit(site))


def test_the_audit_log_is_an_admins(site: Site) -> None:
    for role in (Role.VIEWER, Role.OPERATOR):
        answer = site.get("/v1/audit", role)
        assert answer.status_code == 403, answer.text
        assert answer.json()["needed"] == "admin"
    assert site.get("/v1/audit", Role.ADMIN).status_code == 200
