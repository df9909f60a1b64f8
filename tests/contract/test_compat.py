"""REST v1 is versioned: the generated document against the committed snapshot.

``tests/golden/openapi-v1.json`` is the document as last released. A difference fails this
test either way, with what changed: an incompatible one (docs/api.md's policy: a removed
route, parameter, success status or answer field, a type or enum changed, a new required
request field...) says why it breaks clients; a compatible one (an optional field, a new
route) says how to take it into the snapshot on purpose:

    STEPLINE_UPDATE_OPENAPI=1 .venv/bin/pytest tests/contract/test_compat.py

which rewrites the snapshot only when every difference is compatible
(``STEPLINE_UPDATE_OPENAPI=breaking`` rewrites it anyway: for a removal at the end of its
deprecation period, as the policy allows, and reviewed as such).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from stepline.engine._http.contract import document
from tests.contract import compat

SNAPSHOT = Path(__file__).resolve().parents[1] / "golden" / "openapi-v1.json"
UPDATE = "STEPLINE_UPDATE_OPENAPI"


def _generated() -> dict[str, Any]:
    doc = document.document()
    doc["info"].pop("version")  # the release changes with every release; the contract need not
    result: dict[str, Any] = json.loads(json.dumps(doc))
    return result


def test_the_document_matches_its_snapshot() -> None:
    new = _generated()
    wanted = os.environ.get(UPDATE, "")
    if not SNAPSHOT.exists() and not wanted:
        pytest.fail(f"no snapshot at {SNAPSHOT}: run {UPDATE}=1 pytest {__file__}")
    old = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {"paths": {}}
    if old == new:
        return
    broken = compat.breaking(old, new)
    if wanted == "breaking" or (wanted and not broken):
        SNAPSHOT.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        return
    if broken:
        pytest.fail(
            "incompatible changes to REST v1 (docs/api.md, 'What may change'): mark the old "
            "field, parameter or route `deprecated` and keep it instead:\n  " + "\n  ".join(broken)
        )
    pytest.fail(
        "REST v1 changed compatibly; take it into the snapshot on purpose with\n"
        f"  {UPDATE}=1 .venv/bin/pytest tests/contract/test_compat.py\n"
        "what differs:\n  " + "\n  ".join(compat.changes(old, new))
    )


# -- the checker itself ------------------------------------------------------------------------


def _edited(path: tuple[Any, ...], value: Any = None, *, delete: bool = False) -> list[str]:
    old = _generated()
    new = copy.deepcopy(old)
    target = new
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return compat.breaking(old, new)


RUN = ("paths", "/v1/runs/{run_id}", "get")
LIST = ("paths", "/v1/runs", "get")
START = ("paths", "/v1/functions/{function_id}/runs", "post")
RUN_SHAPE = ("components", "schemas", "Run")
BODY = (*START, "requestBody", "content", "application/json", "schema")


def test_a_removed_route_breaks() -> None:
    assert _edited(RUN, delete=True) == ["GET /v1/runs/{run_id}: operation removed"]


def test_a_removed_or_newly_required_query_parameter_breaks() -> None:
    params = _generated()["paths"]["/v1/runs"]["get"]["parameters"]
    kept = [p for p in params if p["name"] != "cursor"]
    assert _edited((*LIST, "parameters"), kept) == [
        "GET /v1/runs: query parameter 'cursor' removed"
    ]
    required = [{**p, "required": True} if p["name"] == "limit" else p for p in params]
    assert _edited((*LIST, "parameters"), required) == [
        "GET /v1/runs: query parameter 'limit' now required"
    ]


def test_a_removed_answer_field_or_a_type_change_breaks() -> None:
    props = _generated()["components"]["schemas"]["Run"]["properties"]
    without = {k: v for k, v in props.items() if k != "app_version"}
    found = _edited((*RUN_SHAPE, "properties"), without)
    assert "GET /v1/runs/{run_id}: answer 200: field 'data': field 'app_version' removed" in found
    retyped = {**props, "attributes": {"type": "array"}}
    found = _edited((*RUN_SHAPE, "properties"), retyped)
    assert any("field 'attributes': type" in line for line in found), found


def test_a_new_required_request_field_breaks_and_an_optional_one_does_not() -> None:
    body = _generated()["paths"]["/v1/functions/{function_id}/runs"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    optional = {**schema, "properties": {**schema["properties"], "note": {"type": "string"}}}
    assert _edited(BODY, optional) == []
    required = {**optional, "required": ["note"]}
    assert _edited(BODY, required) == [
        "POST /v1/functions/{function_id}/runs: request body: field 'note' now required"
    ]


def test_additions_and_deprecations_are_compatible() -> None:
    old = _generated()
    new = copy.deepcopy(old)
    new["paths"]["/v1/new"] = {"get": {"responses": {"200": {"description": "new"}}}}
    new["paths"]["/v1/runs"]["get"]["parameters"].append(
        {"name": "extra", "in": "query", "schema": {"type": "string"}}
    )
    new["paths"]["/v1/runs"]["get"]["deprecated"] = True
    run = new["components"]["schemas"]["Run"]
    run["properties"]["new_field"] = {"type": "string"}
    run["properties"]["app_version"]["deprecated"] = True
    assert compat.breaking(old, new) == []
    assert compat.changes(old, new) == ["GET /v1/new", "GET /v1/runs", "schema Run"]
