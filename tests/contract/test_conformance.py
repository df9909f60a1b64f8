"""Every ``/v1`` operation's answers against the document, in process (the fast tier's
share of ``test_fuzz_sqlite.py`` and ``test_fuzz_postgres.py``).

A dev-mode engine with one function and one live run serves through a ``TestClient``;
for each operation of the document, schemathesis generates valid requests (a few per
operation, derandomized: the same ones every run) and checks each answer as the fuzz run
does: no 5xx, a documented status, the declared content type and body; and every query
parameter and every body field the route's handler reads is one the document declares
for it (the declarations are the handlers' contract: a handler that starts reading a new
parameter or field fails here until it is declared, and so in the document). Long-polls are
asked for an answer now, and an app sync for a URL that refuses connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import starlette.datastructures
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from starlette.testclient import TestClient

from stepline.engine import Engine, EngineSettings
from stepline.engine._http import wire
from stepline.engine._http.api import build_app
from stepline.engine._http.contract import document
from tests.contract.fuzz_run import APP

SCHEMA = schemathesis.openapi.from_dict(document.document())
OPERATIONS = {found.ok().label: found.ok() for found in SCHEMA.get_all_operations()}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
#: the only app URL a generated sync may name: nothing listens there
DEAD_APP = APP["url"]


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("conformance") / "e.db"
    engine = Engine(EngineSettings(database_url=str(db), poll_interval=0.05))
    with TestClient(build_app(engine), base_url="http://127.0.0.1") as client:
        assert client.post("/fn/register", json=APP).status_code == 200
        assert client.post("/v1/functions/fuzz-fn/runs", json={}).status_code == 201
        yield client


def _request(case: Any) -> dict[str, Any]:
    """The case as the test client's keyword arguments, asking for an answer now."""
    sent = case.as_transport_kwargs(base_url="http://127.0.0.1")
    sent.pop("cookies", None)  # dev mode: no credential, and per-request cookies warn
    sent["headers"] = {**sent.get("headers", {}), "Accept": "application/json"}
    params = dict(sent.get("params") or {})
    if "wait" in params:
        params["wait"] = 0
    sent["params"] = params
    if case.operation.label == "POST /v1/apps/sync" and isinstance(sent.get("json"), dict):
        sent["json"] = {**sent["json"], "url": DEAD_APP}
    if "data" in sent:  # a raw body, as httpx takes it
        raw = sent.pop("data")
        sent["content"] = raw.encode() if isinstance(raw, str) else raw
    return sent


@pytest.fixture
def query_reads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The query parameter names read while the test runs (``get``, ``[]``, ``in``,
    ``getlist``), whoever reads them."""
    read: set[str] = set()
    params = starlette.datastructures.QueryParams
    getitem, getlist, contains = params.__getitem__, params.getlist, params.__contains__

    def noted(method: Any) -> Any:
        def reading(self: Any, key: Any, *args: Any) -> Any:
            read.add(str(key))
            return method(self, key, *args)

        return reading

    monkeypatch.setattr(params, "__getitem__", noted(getitem))
    monkeypatch.setattr(params, "getlist", noted(getlist))
    monkeypatch.setattr(params, "__contains__", noted(contains))
    return read


class _Reading(dict):  # type: ignore[type-arg]
    """A JSON body object noting the keys its reader asks for."""

    def __init__(self, value: dict[str, Any], read: set[str]) -> None:
        super().__init__(value)
        self.read = read

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(str(key))
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(str(key))
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


@pytest.fixture
def body_reads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The top-level body fields read while the test runs (every body goes through
    ``wire.json_body``)."""
    read: set[str] = set()
    parse = wire.json_body

    def reading(raw: bytes, *, required: bool = True) -> Any:
        found = parse(raw, required=required)
        return _Reading(found, read) if isinstance(found, dict) else found

    monkeypatch.setattr(wire, "json_body", reading)
    return read


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_each_operation_answers_as_documented(
    http: TestClient, label: str, query_reads: set[str], body_reads: set[str]
) -> None:
    operation = OPERATIONS[label]

    @settings(
        max_examples=5,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy())
    def answers(case: Any) -> None:
        response = http.request(**_request(case))
        case.validate_response(response, checks=CHECKS)

    answers()
    declared = {p["name"] for p in operation.definition.raw.get("parameters", [])}
    assert query_reads <= declared, f"{label} reads query parameters it does not declare"
    body = operation.definition.raw.get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    fields = set(schema.get("properties", {}))
    for option in schema.get("anyOf", ()):  # an event, or a list of them
        fields |= set(option.get("properties", option.get("items", {}).get("properties", {})))
    assert body_reads <= fields, f"{label} reads body fields it does not declare"


def test_every_operation_is_checked() -> None:
    described = document.document()["paths"]
    assert len(OPERATIONS) == sum(len(item) for item in described.values())
