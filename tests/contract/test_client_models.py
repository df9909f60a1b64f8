"""The Python client's models against the document: what they read is what the engine says.

Each ``from_wire`` of ``stepline._api`` is fed answers generated from the document's
schema for its record (every optional field present or not, every nullable one null or
not, every enum value): it never fails on one, and every field it reads is a field the
document lists. A client field the engine stopped sending, renamed or retyped fails here
before a user's call does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline._api.approvals import Approval
from stepline._api.bulk import BulkInfo
from stepline._api.catalog import EventInfo, FunctionInfo, ListedRun
from stepline._api.run_info import RunInfo, StepInfo
from stepline._status import RunStatus
from stepline.engine._http import views
from stepline.engine._http.contract import document

DOCUMENT = document.document()
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]

#: each client model and the document's shape of what it reads
MODELS: list[tuple[Callable[[Mapping[str, Any]], object], str]] = [
    (RunInfo.from_wire, "Run"),
    (ListedRun.from_wire, "Run"),
    (StepInfo.from_wire, "Step"),
    (BulkInfo.from_wire, "BulkAction"),
    (Approval.from_wire, "Approval"),
    (FunctionInfo.from_wire, "Function"),
    (EventInfo.from_wire, "Event"),
]


class Recording(Mapping[str, Any]):
    """A JSON object that notes every key read from it."""

    def __init__(self, value: dict[str, Any], read: set[str]) -> None:
        self.value, self.read = value, read

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self.value[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self.value

    def __iter__(self) -> Iterator[str]:
        return iter(self.value)

    def __len__(self) -> int:
        return len(self.value)


_SCALAR = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=6)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_TIMES = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1)).map(
    lambda t: views.timestamp(t.replace(tzinfo=dt.timezone.utc).timestamp())
)


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Values valid under ``schema`` (the dialect the contract's schemas are written in)."""
    if "$ref" in schema:
        return st.deferred(lambda: values(SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]]))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([values(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([values({**schema, "type": k}) for k in kind])
    if kind is None:
        return _JSON
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(-1e9, 1e9, allow_nan=False)
    if kind == "string":
        return _TIMES if schema.get("format") == "date-time" else st.text(max_size=8)
    if kind == "array":
        return st.lists(values(schema.get("items", {})), max_size=3)
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties")
    if not properties and extra is True:
        return st.dictionaries(st.text(max_size=4), _JSON, max_size=3)
    if not properties and isinstance(extra, dict):
        return st.dictionaries(st.text(min_size=1, max_size=4), values(extra), max_size=3)
    if not properties:
        return st.dictionaries(st.text(max_size=4), _JSON, max_size=3)
    return st.fixed_dictionaries(
        {name: values(s) for name, s in properties.items() if name in required},
        optional={name: values(s) for name, s in properties.items() if name not in required},
    )


@pytest.mark.parametrize(("read", "shape"), MODELS, ids=lambda v: getattr(v, "__qualname__", v))
def test_each_client_model_reads_the_documents_fields_with_their_types(
    read: Callable[[Mapping[str, Any]], object], shape: str
) -> None:
    fields = set(SCHEMAS[shape]["properties"])
    seen: set[str] = set()

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(values(SCHEMAS[shape]))
    def reads(answer: dict[str, Any]) -> None:
        read(Recording(answer, seen))

    reads()
    assert seen - fields == set(), f"{shape}: read fields the document does not have"
    assert seen, f"{shape}: read nothing"


def test_the_clients_run_statuses_are_the_documents() -> None:
    assert SCHEMAS["Run"]["properties"]["status"]["enum"] == [s.value for s in RunStatus]
    for status in SCHEMAS["Run"]["properties"]["status"]["enum"]:
        run = RunInfo.from_wire({"run_id": "r", "status": status, "created_at": None})
        assert run.status is RunStatus(status)
