"""Saved views over REST, on both stores: each principal's named run queries and columns.

A view is saved under a name (saving the name again replaces it), listed only for the
principal that saved it (the name ``principals`` finds for the request: in dev mode,
``dev`` or whom ``X-Stepline-Actor`` names), deleted by name; a bad query is refused as
``?query=`` is (400 with its column), as are unknown columns, bad names and one view past
the cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._http import saved_views
from stepline.engine._http.api import build_app
from tests._support.aio import arun

ALICE = {"x-stepline-actor": "alice"}  # dev mode: who a caller says it acts for
BOB = {"x-stepline-actor": "bob"}


@asynccontextmanager
async def _api(db: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = Engine(EngineSettings(database_url=db))
    await engine.start(worker=False, sync=False)
    try:
        transport = httpx.ASGITransport(app=build_app(engine))
        headers = {"x-stepline-csrf": "1"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as http:
            yield http
    finally:
        await engine.stop()


def test_views_are_saved_listed_replaced_and_deleted_per_principal(db: str) -> None:
    async def scenario() -> None:
        async with _api(db) as http:
            body = {"query": 'status == "Failed"', "columns": ["status", "id", "error"]}
            saved = await http.put("/v1/views/failures", json=body, headers=ALICE)
            assert saved.status_code == 200, saved.text
            view = saved.json()["data"]
            assert view["name"] == "failures"
            assert view["query"] == 'status == "Failed"'
            assert view["columns"] == ["status", "id", "error"]
            assert view["updated_at"].endswith("Z")
            await http.put(
                "/v1/views/slow", json={"query": 'duration > duration("1m")'}, headers=ALICE
            )
            listed = (await http.get("/v1/views", headers=ALICE)).json()["data"]
            assert [v["name"] for v in listed] == ["failures", "slow"]
            assert listed[1]["columns"] == list(saved_views.COLUMNS[:7])  # the default ones
            # another principal sees none of them, and may use the same names
            assert (await http.get("/v1/views", headers=BOB)).json()["data"] == []
            assert (await http.get("/v1/views")).json()["data"] == []
            bobs = {"query": "", "columns": ["id"]}
            assert (await http.put("/v1/views/failures", json=bobs, headers=BOB)).status_code == 200
            # saving a name again replaces that view
            again = {"query": 'status == "Cancelled"', "columns": ["id"]}
            await http.put("/v1/views/failures", json=again, headers=ALICE)
            listed = (await http.get("/v1/views", headers=ALICE)).json()["data"]
            assert [(v["name"], v["query"]) for v in listed] == [
                ("failures", 'status == "Cancelled"'),
                ("slow", 'duration > duration("1m")'),
            ]
            [bob] = (await http.get("/v1/views", headers=BOB)).json()["data"]
            assert bob["query"] == ""
            # deleted by name, the other principal's untouched
            gone = await http.delete("/v1/views/failures", headers=ALICE)
            assert gone.json()["data"] == {"name": "failures", "deleted": True}
            missing = await http.delete("/v1/views/failures", headers=ALICE)
            assert missing.status_code == 404
            assert "no saved view named 'failures'" in missing.json()["error"]
            assert len((await http.get("/v1/views", headers=BOB)).json()["data"]) == 1

    arun(scenario())


@pytest.mark.parametrize(
    ("name", "body", "wanted"),
    [
        ("bad", {"query": 'status == "Failed" && plan == 1'}, "unknown field 'plan'"),
        ("bad", {"query": 3}, "query: want a string"),
        ("bad", {"query": "", "columns": ["id", "nope"]}, "columns: want a list"),
        ("bad", {"query": "", "columns": ["id", "id"]}, "columns: want a list"),
        ("bad", {"query": "", "columns": []}, "columns: want a list"),
        ("bad", ["not", "an", "object"], "want a JSON object"),
        ("x" * 81, {"query": ""}, "name: want 1 to 80"),
        ("%20", {"query": ""}, "name: want 1 to 80"),
    ],
)
def test_a_bad_view_is_a_400_saying_what_is_wrong(
    tmp_path: Path, name: str, body: object, wanted: str
) -> None:
    async def scenario() -> None:
        async with _api(str(tmp_path / "e.db")) as http:
            answer = await http.put(f"/v1/views/{name}", json=body)
            assert answer.status_code == 400, answer.text
            assert wanted in answer.json()["error"]
            if "plan" in wanted:
                assert answer.json()["details"]["column"] == 23
            assert (await http.get("/v1/views")).json()["data"] == []

    arun(scenario())


def test_a_principal_keeps_at_most_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saved_views, "MAX_VIEWS", 2)

    async def scenario() -> None:
        async with _api(str(tmp_path / "e.db")) as http:
            for name in ("a", "b"):
                assert (await http.put(f"/v1/views/{name}", json={})).status_code == 200
            over = await http.put("/v1/views/c", json={})
            assert over.status_code == 409
            assert "delete one first" in over.json()["error"]
            # replacing one is not one more
            assert (await http.put("/v1/views/a", json={"query": "true"})).status_code == 200
            # another principal has its own count
            assert (await http.put("/v1/views/c", json={}, headers=BOB)).status_code == 200

    arun(scenario())


def test_who_is_asking_is_the_principal_the_gate_found() -> None:
    from starlette.requests import Request

    from stepline._serving.access import Credential, Role
    from stepline.engine._http.principals import Principal

    scope: dict[str, object] = {"type": "http", "headers": [], "state": {}}
    request = Request(scope)
    request.state.principal = Principal("ada", Role.VIEWER, Credential.SESSION)
    assert saved_views.asking(request) == "ada"
    assert saved_views.asking(Request({"type": "http", "headers": []})) == "anonymous"
