"""Fuzz the expression language where ``tests/cel/test_fuzz.py`` does not reach.

That suite covers short text (at most 80 characters) and well-formed expressions. Here:
inputs far past the nesting limit and huge ones (long chains, big literals, deep
brackets), evaluated against hostile event data; and expressions reaching the engine
through registration (trigger ``expression``, cancel ``if``) and then matched against
generated events at fan-out, inside the ingest transaction. Compiling raises only
``ExpressionError``, evaluating only ``EvaluationError``, matching never; a bad
expression is a 400 at registration, and no event is ever refused with a 5xx.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepline import _cel
from stepline._cel import EvaluationError, ExpressionError
from tests._support.logs import captured_logs
from tests._support.targets import Refuse, assert_precise, fuzz_target

from . import strategies as s

pytestmark = [pytest.mark.slow]

_OPENERS = {
    "(": ")",
    "!": "",
    "-": "",
    "[": "]",
    "size(": ")",
    "{1: ": "}",
    "event.data.items.map(v, ": ")",
    "has(event.data.x) ? ": " : 0",
    "[1, 2].exists(v, v == ": ")",
}
_FIELDS = ["x", "n", "items", "s", "deep", "k"]
_leaves = st.one_of(
    st.sampled_from(
        [
            "1",
            "event.data.x",
            "event.data.s",
            "event.data.items[0]",
            "'" + "é" * 50 + "'",
            "9" * 400,
            "1e99999",
            "0x" + "f" * 100,
            "18446744073709551616u",
            "b'\\xff'",
            "r'''" + "\\" * 20 + "'''",
            "timestamp('0001-01-01T00:00:00+14:00')",
            "duration('9999999999w')",
            "'a'.matches('(')",
        ]
    ),
    s.texts,
)


@st.composite
def _nested(draw: st.DrawFn) -> str:
    openers = draw(st.lists(st.sampled_from(sorted(_OPENERS)), min_size=1, max_size=300))
    core = draw(_leaves)
    return "".join(openers) + core + "".join(_OPENERS[o] for o in reversed(openers))


@st.composite
def _chains(draw: st.DrawFn) -> str:
    op = draw(st.sampled_from([" + ", " && ", " || ", " == ", " < ", ".", " in ", " ? 1 : "]))
    return op.join(draw(st.lists(_leaves, min_size=2, max_size=400)))


_hostile = st.one_of(_nested(), _chains(), st.text(min_size=100, max_size=2000))
_data = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        s.texts,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_FIELDS), inner),
    max_leaves=12,
)


@settings(s.FUZZ, max_examples=150)
@given(_hostile, st.dictionaries(st.sampled_from(_FIELDS), _data))
def test_huge_and_deep_expressions_compile_or_raise_the_documented_error(
    text: str, data: dict[str, Any]
) -> None:
    try:
        program = _cel.compile(text)
    except ExpressionError as exc:
        error = exc
    else:
        variables = {"event": {"name": "a/b", "data": data}, "async": {"data": data}}
        with contextlib.suppress(EvaluationError):
            program.evaluate(variables)
        assert program.matches(variables) in (True, False)
        return
    assert error.column >= 1
    assert error.reason in str(error)


def _registration(trigger: Any, cancel: Any) -> dict[str, Any]:
    url = "http://127.0.0.1:1/api/inngest"
    function = {
        "id": "cel-f",
        "name": "cel",
        "triggers": [{"event": "cel/*", "expression": trigger}],
        "cancel": [{"event": "cel/stop", "if": cancel}],
        "steps": {"step": {"id": "step", "runtime": {"url": url}, "retries": {"attempts": 0}}},
    }
    return {"appName": "cel", "url": url, "functions": [function]}


_expressions = st.one_of(
    _hostile,
    st.sampled_from(
        [
            "event.data.x > 1",
            "event.data.s.startsWith('a')",
            "size(event.data.items) > 2",
            "event.data.deep.a.b.c == 1",
            "event.data.n / 0 == 1",
            "int(event.data.s) > 3",
            "event.data.items.exists(v, v == event.data.x)",
            "async.data.k == event.data.k",
        ]
    ),
)


def test_expressions_reaching_the_engine_never_cost_a_5xx(db: str) -> None:
    with (
        captured_logs("stepline", level=logging.ERROR) as errors,
        fuzz_target(db, http=Refuse()) as target,
    ):

        @settings(s.FUZZ, max_examples=50)
        @given(
            _expressions,
            _expressions,
            st.lists(st.dictionaries(st.sampled_from(_FIELDS), _data), min_size=1, max_size=3),
        )
        def check(trigger: str, cancel: str, events: list[dict[str, Any]]) -> None:
            body = s.dumps(_registration(trigger, cancel))
            assert_precise(target.http.post("/fn/register", content=body), 200, 400)
            for index, data in enumerate(events):
                name = "cel/stop" if index == 2 else "cel/go"
                body = s.dumps({"name": name, "data": data})
                sent = target.http.post("/e/key", content=body)
                # a lone surrogate is not Unicode: the only reason to refuse these events
                assert_precise(sent, *((200, 400) if b"\\ud" in body else (200,)))
            assert not errors, "\n".join(errors)

        check()
    assert not errors, "\n".join(errors)
