"""The OpenAPI document of REST v1 (``GET /v1/openapi.json``) against the routes it describes.

It is valid OpenAPI 3.1; it has exactly one operation for every ``/v1`` route of the
access table and nothing else; each operation's ``security`` is its row's credentials;
an app with a ``/v1`` route the contract does not describe is not built; and the engine
serves the document under the table's rules (open in dev, key or session in production).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
import starlette.routing
from starlette.testclient import TestClient

from stepline._protocol import signing
from stepline._serving import access
from stepline._serving.access import Credential
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._http.contract import document, operations

SIGNING_KEY = "signkey-prod-" + "d00d" * 16
V1_ROWS = [row for row in access.ENGINE if document.described(row)]
JSON = {"content-type": "application/json"}


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return {(m.upper(), p): op for p, item in paths.items() for m, op in item.items()}


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document.document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_v1_route_has_one_operation_and_no_operation_lacks_a_route() -> None:
    described = _operations(document.document())
    expected = {(row.method, document.openapi_path(row.path)) for row in V1_ROWS}
    assert set(described) == expected
    assert len({op["operationId"] for op in described.values()}) == len(described)
    assert len(operations.OPERATIONS) == len(V1_ROWS)


@pytest.mark.parametrize("row", V1_ROWS, ids=lambda row: f"{row.method} {row.path}")
def test_each_operation_names_its_rows_credentials_and_path_parameters(
    row: access.Route,
) -> None:
    op = _operations(document.document())[(row.method, document.openapi_path(row.path))]
    # every credential a /v1 route takes is a security scheme of the document
    assert {k for k in row.accepts if k is not Credential.NONE} <= set(document.SCHEMES)
    schemes = {name for requirement in op["security"] for name in requirement}
    wanted = {document.SCHEMES[k][0] for k in row.accepts if k in document.SCHEMES}
    assert schemes == wanted
    assert ({} in op["security"]) is (Credential.NONE in row.accepts)
    assert op["x-stepline-credentials"] == sorted(k.value for k in row.accepts)
    in_path = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
    assert in_path == document.path_parameters(row.path)
    if Credential.NONE not in row.accepts:
        assert "401" in op["responses"]
    for status, answer in op["responses"].items():
        if status.startswith(("4", "5")):
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize("mode", ["start", "dev"])
def test_every_v1_route_the_app_serves_is_in_the_document_and_nothing_else(
    tmp_path: Path, mode: str
) -> None:
    # the app's own routes, not the table they are built from: a route added beside the
    # table would be missed by the test above
    settings = EngineSettings(database_url=str(tmp_path / "e.db"))
    if mode == "start":
        settings = EngineSettings(
            mode="start", database_url=str(tmp_path / "e.db"), signing_keys=(SIGNING_KEY,)
        )
    served = {
        (method, document.openapi_path(route.path))
        for route in build_app(Engine(settings)).routes
        if isinstance(route, starlette.routing.Route) and route.path.startswith("/v1/")
        for method in route.methods or ()
        if method != "HEAD"  # Starlette's own, beside every GET
    }
    assert served, "the app serves no /v1 route"
    assert sorted(served - set(_operations(document.document()))) == [], "undescribed routes"
    assert sorted(set(_operations(document.document())) - served) == [], "routes not served"


def _error_schema() -> dict[str, Any]:
    schemas = document.document()["components"]["schemas"]
    return {**schemas["Error"], "components": {"schemas": schemas}}


def test_the_error_object_has_code_message_and_details() -> None:
    error = document.document()["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message", "details", "error"]
    assert error["properties"]["details"]["type"] == "object"


def test_every_kind_of_refusal_is_the_one_error_object(tmp_path: Path) -> None:
    """Refusals written by each part of the engine: the router, the dev guard, the
    credential check, a handler's refusal, a lookup, a store's conflict."""
    schema = _error_schema()
    found: list[tuple[str, int, dict[str, Any]]] = []  # what, status, body

    def refused(label: str, answer: Any, status: int) -> None:
        assert answer.status_code == status, (label, answer.text)
        assert answer.headers["content-type"].startswith("application/json"), label
        found.append((label, status, answer.json()))

    dev = Engine(EngineSettings(database_url=str(tmp_path / "dev.db")))
    with TestClient(build_app(dev), base_url="http://127.0.0.1") as http:
        refused("router miss", http.get("/v1/no-such-route"), 404)
        refused("method", http.put("/v1/runs"), 405)
        refused("unknown run", http.get("/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)
        refused("bad query", http.get("/v1/runs", params={"limit": "x"}), 400)
        refused("bad body", http.post("/v1/bulk/cancel", content=b"{", headers=JSON), 400)
        refused("cross-site", http.post("/v1/runs/x/cancel"), 403)
        refused("foreign host", http.get("/v1/runs", headers={"host": "evil.example"}), 403)
    production = EngineSettings(
        mode="start", database_url=str(tmp_path / "start.db"), signing_keys=(SIGNING_KEY,)
    )
    with TestClient(build_app(Engine(production))) as http:
        refused("no credential", http.get("/v1/runs"), 401)
    for label, _, body in found:
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
        assert body["message"], label
        assert body["message"] == body["error"], label
        assert isinstance(body["details"], dict), label
    codes = {label: body["code"] for label, _, body in found}
    assert codes["router miss"] == codes["unknown run"] == "not_found"
    assert codes["no credential"] == "unauthorized"
    assert codes["method"] == "method_not_allowed"


def test_a_refusals_own_fields_are_its_details_too() -> None:
    from stepline.engine._http import wire

    assert wire.error_body(409, "taken", code="run_id_taken") == {
        "code": "run_id_taken", "message": "taken", "details": {}, "error": "taken",
    }  # fmt: skip
    skipped = wire.error_body(409, "skipped", event_id="e1")
    assert skipped["code"] == "conflict"
    assert skipped["details"] == {"event_id": "e1"}
    assert skipped["event_id"] == "e1"
    query = wire.error_body(400, "bad query", details={"reason": "r", "position": 3})
    assert query["details"] == {"reason": "r", "position": 3}
    assert wire.error_object(400, query) == query  # once is enough


def test_a_v1_route_without_an_operation_stops_the_app_from_being_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = tuple(op for op in operations.OPERATIONS if op.path != "/v1/bulk/{bulk_id}")
    monkeypatch.setattr(operations, "OPERATIONS", kept)
    monkeypatch.setattr(operations, "_BY_KEY", {(op.method, op.path): op for op in kept})
    document._built.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"GET /v1/bulk/\{bulk_id\}"):
            build_app(Engine(EngineSettings(database_url=str(tmp_path / "e.db"))))
    finally:
        document._built.cache_clear()


def test_the_engine_serves_the_document_open_in_dev_and_behind_the_key_in_production(
    tmp_path: Path,
) -> None:
    dev = Engine(EngineSettings(database_url=str(tmp_path / "dev.db")))
    with TestClient(build_app(dev), base_url="http://127.0.0.1") as http:
        answer = http.get("/v1/openapi.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == json.loads(json.dumps(document.document()))
    production = EngineSettings(
        mode="start",
        database_url=str(tmp_path / "start.db"),
        signing_keys=(SIGNING_KEY,),
        event_keys=("event-key",),
    )
    with TestClient(build_app(Engine(production))) as http:
        assert http.get("/v1/openapi.json").status_code == 401
        auth = {"authorization": signing.bearer_token(SIGNING_KEY)}
        assert http.get("/v1/openapi.json", headers=auth).status_code == 200


def test_statuses_in_the_document_are_the_engines_run_and_step_statuses() -> None:
    from stepline._status import RunStatus
    from stepline.engine._model import StepStatus

    schemas = document.document()["components"]["schemas"]
    assert schemas["Run"]["properties"]["status"]["enum"] == [s.value for s in RunStatus]
    assert schemas["Step"]["properties"]["status"]["enum"] == [s.value for s in StepStatus]
