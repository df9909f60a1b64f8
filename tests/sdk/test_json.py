"""``stepline._json``: orjson on the hot paths, with the standard library's answers.

Every property is checked with orjson (the ``dev`` extra installs it) and with the
standard library alone (``_json._orjson`` set to ``None``, as when orjson is missing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import os
import subprocess
import sys
import uuid
from collections import OrderedDict
from typing import Any

import hypothesis.strategies as st
import pydantic
import pytest
from hypothesis import given, settings

from stepline import _errors, _json, _serde
from tests._support.ci import require_module

BACKENDS = ["orjson", "stdlib"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(_json, "_orjson", None)
    name: str = request.param
    return name


def test_orjson_is_used_when_installed() -> None:
    require_module("orjson")  # the dev extra has it (its engine extra): fails under CI without
    assert _json.FAST
    assert _json._orjson is not None


@pytest.mark.process
def test_stepline_json_stdlib_keeps_to_the_standard_library() -> None:
    code = "from stepline import _json; print(_json.FAST, _json._orjson)"
    env = {**os.environ, "STEPLINE_JSON": "stdlib"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "None"]


# -- values ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson cannot encode those, nor decode them exactly
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # lone surrogates too: orjson refuses them, json escapes them
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(value=values)
@pytest.mark.parametrize("use_orjson", [True, False])
def test_round_trips_equal_the_standard_library(value: Any, use_orjson: bool) -> None:
    saved = _json._orjson
    if not use_orjson:
        _json._orjson = None  # type: ignore[assignment]
    try:
        expected = json.loads(json.dumps(value))
        assert _json.loads(_json.dumpb(value)) == expected
        assert _json.loads(_json.dumps(value)) == expected
        # what json writes (ASCII escapes, big integers, spaces) decodes the same
        assert _json.loads(json.dumps(value)) == expected
        assert _json.loads(json.dumps(value).encode()) == expected
    finally:
        _json._orjson = saved


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",  # orjson alone would give a float
        "-9223372036854775809",
        "18446744073709551616",
        '{"id": 99999999999999999999}',
        ' {"id":99999999999999999999,"n":[1,-99999999999999999999]}',
        "[\t99999999999999999999,\r\n 99999999999999999999 ]",
        '{"id": "99999999999999999999", "n": 99999999999999999999}',
        "[1e400, -1e400]",  # json: infinities
        "NaN",
        '[Infinity, -Infinity, {"a": NaN}]',
        '"\\ud800"',
        '{"a": 1, "a": 2}',
    ],
)
def test_loads_answers_as_json_does(backend: str, text: str) -> None:
    got, want = _json.loads(text), json.loads(text)
    assert json.dumps(got) == json.dumps(want)  # NaN != NaN: compare the written forms
    assert json.dumps(_json.loads(text.encode("utf-8"))) == json.dumps(json.loads(text.encode()))


@pytest.mark.parametrize(
    "text",
    [
        '{"user": "1234567890123456789012", "note": "call 5"}',  # an id kept as a string
        '{"a7f3c2901234567890123456789b": {"data": 1}}',  # a hashed step id's digits
        '["x-1", "1.1234567890123456789012", "y"]',
    ],
)
def test_digits_inside_strings_stay_on_orjson(text: str) -> None:
    """Only an integer orjson may round goes to the standard library: a run's state
    holding a long digit string decodes as fast as any other."""
    require_module("orjson")

    def slow(_data: object) -> object:
        raise AssertionError(f"decoded by the standard library: {text}")

    assert _json.loads(text, slow=slow) == json.loads(text)
    assert _json.loads(text.encode(), slow=slow) == json.loads(text)


@pytest.mark.parametrize("text", ["", "[1,", "{'a': 1}", "nul", b"\xff\xfe[", "[1] x"])
def test_loads_refuses_what_json_refuses(backend: str, text: str | bytes) -> None:
    with pytest.raises(ValueError) as want:  # noqa: PT011 - messages compared below
        json.loads(text)
    with pytest.raises(ValueError) as got:  # noqa: PT011 - messages compared below
        _json.loads(text)
    assert str(got.value) == str(want.value)  # json words the error either way


def test_a_byte_order_mark_is_taken_as_json_takes_it(backend: str) -> None:
    assert _json.loads(b"\xef\xbb\xbf[1]") == json.loads(b"\xef\xbb\xbf[1]") == [1]
    with pytest.raises(ValueError, match="BOM"):
        _json.loads("\ufeff[1]")  # json refuses it in text


def test_utf16_bytes_decode_as_json_does(backend: str) -> None:
    raw = json.dumps({"a": "é"}).encode("utf-16")
    assert _json.loads(raw) == json.loads(raw) == {"a": "é"}


def test_dumps_refuses_what_json_refuses(backend: str) -> None:
    with pytest.raises(TypeError):
        _json.dumps({"a": object()})
    with pytest.raises(TypeError):
        _json.dumps({(1, 2): 3})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises((ValueError, TypeError)):
        _json.dumps(loop)


def test_finite_refuses_nan_and_infinities_but_not_null(backend: str) -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="Out of range float"):
            _json.dumpb({"x": [1, bad]}, finite=True)
    assert _json.dumpb({"x": None, "y": "null"}, finite=True) == b'{"x":null,"y":"null"}'


class _Ratio(float):
    pass


class _Table(dict[str, Any]):
    pass


class _Row(list[Any]):
    pass


@pytest.mark.parametrize(
    "bad",
    [
        {"a": None, "b": ({"c": [None, math.nan]},)},  # in a tuple, under lists and dicts
        [None, _Ratio("inf")],  # a float subclass
        _Table(a=None, b=-math.inf),  # in a dict subclass
        {"a": _Row([None, math.nan])},  # in a list subclass
    ],
)
def test_finite_finds_nan_wherever_it_is_nested(backend: str, bad: object) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        _json.dumpb(bad, finite=True)


def test_finite_takes_nested_plain_values_and_their_subclasses(backend: str) -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    value = {
        "a": None,
        "b": (1, "x", True, 2.5, [None]),
        "c": _Table(d=_Ratio(0.5)),
        "e": Level.HIGH,
    }
    assert _json.loads(_json.dumpb(value, finite=True)) == json.loads(json.dumps(value))


def test_keys_that_are_not_strings_are_written_as_json_writes_them(backend: str) -> None:
    value = {1: "a", 2.5: "b", False: "c", None: "d"}
    assert _json.loads(_json.dumpb(value)) == json.loads(json.dumps(value))


def test_subclasses_of_builtins_encode_as_their_base(backend: str) -> None:
    class Colour(str, enum.Enum):
        RED = "red"

    class Size(enum.IntEnum):
        BIG = 3

    value = {"o": OrderedDict(b=1, a=2), "c": Colour.RED, "s": Size.BIG, "t": (1, 2)}
    assert _json.loads(_json.dumpb(value)) == json.loads(json.dumps(value))


# -- _serde: user values, strictly ------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    when: dt.datetime
    _tag: str = "p"  # orjson's own dataclass form would leave it out


class Model(pydantic.BaseModel):
    name: str
    at: dt.date


def test_serde_dumps_user_values_one_way_on_both_backends(backend: str) -> None:
    when = dt.datetime(2026, 11, 21, 8, 30, 1, 123456, tzinfo=dt.timezone.utc)
    value = {
        "point": Point(1, when),
        "model": Model(name="n", at=dt.date(2026, 1, 2)),
        "when": when,
        "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "set": {1},
        "big": 2**70,
        "text": "héllo \u2028",
    }
    assert json.loads(_serde.dumps(value)) == {
        "point": {"x": 1, "when": "2026-11-21T08:30:01.123456+00:00", "_tag": "p"},
        "model": {"name": "n", "at": "2026-01-02"},
        "when": "2026-11-21T08:30:01.123456+00:00",
        "naive": "2026-01-02T03:04:05",
        "id": "12345678-1234-5678-1234-567812345678",
        "set": [1],
        "big": 2**70,
        "text": "héllo \u2028",
    }


def test_serde_dumps_what_orjson_writes_otherwise_as_json_does(backend: str) -> None:
    # orjson alone leaves out a dataclass's _fields and refuses times with a zone
    assert _serde.dumps(Point(1, dt.datetime(2026, 1, 2))) == (
        '{"x":1,"when":"2026-01-02T00:00:00","_tag":"p"}'
    )
    assert _serde.dumps(dt.time(1, 2, 3, tzinfo=dt.timezone.utc)) == '"01:02:03+00:00"'


@pytest.mark.parametrize("bad", [math.nan, math.inf, object(), {"k": -math.inf}])
def test_serde_dumps_refuses_with_a_clear_error(backend: str, bad: object) -> None:
    with pytest.raises(_errors.OutputUnserializableError, match="not JSON serializable"):
        _serde.dumps({"v": bad})


@pytest.mark.parametrize(
    "text", ["NaN", "[Infinity]", "1e400", '"\\ud800"', '{"a": "\\udfff"}', "[" * 5000 + "]" * 5000]
)
def test_serde_loads_is_strict_on_both_backends(backend: str, text: str) -> None:
    with pytest.raises(ValueError) as got:  # noqa: PT011 - each refusal words itself
        _serde.loads(text)
    assert not isinstance(got.value, UnicodeError)  # refused as JSON, not as an encoding
    with pytest.raises(ValueError):  # noqa: PT011 - the same refusal, from bytes
        _serde.loads(text.encode("utf-8", "surrogatepass"))


def test_serde_loads_keeps_big_integers_exact(backend: str) -> None:
    assert _serde.loads(b'{"n": 123456789012345678901234567890}') == {
        "n": 123456789012345678901234567890
    }
    assert _serde.loads('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is fine


@pytest.mark.parametrize("use_orjson", [True, False])
def test_nesting_past_the_limit_is_refused_whatever_the_recursion_limit(
    use_orjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test tools (hypothesis) and libraries raise the recursion limit: the cap holds anyway."""
    if not use_orjson:
        monkeypatch.setattr(_json, "_orjson", None)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)
    try:
        deep = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"
        with pytest.raises(ValueError, match="nested deeper than 512"):
            _serde.loads(deep)
    finally:
        sys.setrecursionlimit(before)
    edge = "[" * _serde.MAX_DEPTH + "]" * _serde.MAX_DEPTH
    assert _serde.loads(edge) == json.loads(edge)
    with pytest.raises(ValueError, match="nested deeper than 512"):
        _serde.loads("[" + edge + "]")
    assert _serde.loads('["' + "[" * 5000 + '"]') == ["[" * 5000]  # brackets in strings


def test_to_jsonable_copies_a_flat_object_and_converts_anything_else(backend: str) -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    flat = {"a": 1, "b": "x", "c": None, "d": True, "e": 2**70}
    copied = _serde.to_jsonable(flat)
    assert copied == flat
    assert copied is not flat
    flat["a"] = 2
    assert copied["a"] == 1, "a later change to the value changes nothing recorded"
    converted = _serde.to_jsonable({"level": Level.HIGH, "ratio": 0.5, 1: "one"})
    assert converted == {"level": 3, "ratio": 0.5, "1": "one"}
    assert type(converted["level"]) is int
    with pytest.raises(_errors.OutputUnserializableError):
        _serde.to_jsonable({"ratio": math.nan})
