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
from starlette.testclient import TestClient

from stepline._protocol import signing
from stepline._serving import access
from stepline._serving.access import Credential
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._http.contract import document, operations

SIGNING_KEY = "signkey-prod-" + "d00d" * 16
V1_ROWS = [row for row in access.ENGINE if document.described(row)]


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
