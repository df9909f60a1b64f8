"""Hypothesis strategies shared by the fuzz tests: hostile text, JSON and raw bodies."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Bounded: every fuzz test runs in seconds (``max_examples`` per store).
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Text a store cannot hold as is (NUL, lone surrogates), unicode digits, long runs.
SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "²",
    "١٢",
    "é",
    "\u202e",
    "inngest/function.finished",
    "a" * 300,
    "0",
    "-1",
    "null",
]
texts = st.one_of(st.text(max_size=16), st.sampled_from(SPECIAL_TEXT))
#: Text that can travel in a URL or a header (no lone surrogates: clients cannot encode them).
url_texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=16),
    st.sampled_from([t for t in SPECIAL_TEXT if "\ud800" not in t and len(t) < 50]),
)
header_texts = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
#: Times and durations, well-formed, overflowing and nonsensical.
times = st.one_of(
    st.sampled_from(
        [
            "1s",
            "0s",
            "-1s",
            "1h30m",
            "9999999999w",
            "9" * 400 + "s",
            "banana",
            "2027-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "1e400",
            "nan",
            "inf",
            "-0",
        ]
    ),
    url_texts,
)


def dumps(value: Any) -> bytes:
    """JSON as Python writes it, NaN and Infinity included (not JSON, but sent anyway)."""
    return json.dumps(value, allow_nan=True).encode()


#: Raw bodies that break parsers: deep nesting, non-JSON constants, bad encodings.
NASTY_BODIES = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b"[" * 5_000 + b"]" * 5_000,
    b'{"a":' * 3_000 + b"1" + b"}" * 3_000,
    b'{"name": "a/b", "ts": NaN}',
    b'{"name": "a/b", "ts": Infinity}',
    b'{"name": "a/b", "ts": 1e400}',
    b'{"name": "a/b", "data": {"x": -Infinity}}',
    b'{"name": "a/b", "data": {"x": 1e999}}',
    b'{"name": "a/b", "ts": 18446744073709551616}',
    b'{"name": "a/b", "ts": 1e20}',
    b'{"name": "\\u0000"}',
    b'{"name": "\\ud800"}',
    b'{"name": "a/b", "id": "\\u0000"}',
    b'{"name": "a/b", "v": "\\udfff"}',
    b'{"name": "a/b", "data": {"\\u0000": "\\ud800"}}',
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    '{"name": "é"}'.encode("latin-1"),
]
raw_bodies = st.one_of(st.sampled_from(NASTY_BODIES), st.binary(max_size=64))


# -- mutating well-formed documents ---------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate_once(body: Any, data: st.DataObject, keys: list[str]) -> Any:
    paths = _paths(body)[1:]
    if not paths:
        return data.draw(json_values)
    path = data.draw(st.sampled_from(paths))
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][data.draw(st.sampled_from(keys))] = data.draw(json_values)
    else:
        parent[last] = data.draw(
            st.one_of(json_values, times, st.sampled_from(["event.data.x >", "(" * 300]))
        )
    return body


def mutated(body: Any, data: st.DataObject, *, keys: list[str]) -> Any:
    """``body`` (changed in place) after one to four random edits: a value replaced by
    hostile JSON, a key deleted, or one of ``keys`` added with a random value."""
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        body = _mutate_once(body, data, keys)
    return body
