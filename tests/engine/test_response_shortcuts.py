"""The engine's reading of a 206 answer skips work only where it provably changes nothing.

* ``limit_outputs(answer_bytes=)`` measures no output when the whole answer is so short
  that no output in it can reach the limit once written again (``_GROWTH``);
* ``_ops`` checks ids, names and expressions for NUL and lone surrogates only when the
  body holds a ``\\u`` escape, the only way JSON can carry either.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepline import _json
from stepline.engine._wire import response
from stepline.engine._wire.response import Failed, Ops, RawResponse

SDK = {"x-inngest-sdk": "py:v0.5.19"}

_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


def _shortest(value: Any) -> str:
    """``value`` as JSON at its shortest: floats in exponent form where that is shorter."""
    if isinstance(value, float):
        mantissa, _, exponent = f"{value:.17e}".partition("e")
        compact = f"{float(mantissa):g}e{int(exponent)}".replace(".0e", "e")
        return (
            compact
            if float(compact) == value and len(compact) < len(repr(value))
            else (json.dumps(value))
        )
    if isinstance(value, list):
        return "[" + ",".join(_shortest(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_shortest(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(_values)
def test_no_output_grows_past_the_bound_when_written_again(value: Any) -> None:
    text = _shortest(value)
    assert response._size(_json.loads(text)) <= response._GROWTH * max(len(text.encode()), 1)


@pytest.mark.parametrize("text", ["5e15", "-5e15", "1e-5", "[5e15,5e15,5e15]", '"\\u00e9"', "0e0"])
def test_the_worst_known_growths_stay_under_the_bound(text: str) -> None:
    assert response._size(_json.loads(text)) <= response._GROWTH * len(text)


def _answer(data: Any) -> RawResponse:
    op = {"op": "StepRun", "id": "s", "name": "s", "displayName": "s", "data": data}
    return RawResponse(206, SDK, json.dumps([op]).encode())


def test_a_short_answer_is_not_measured_and_a_long_one_still_is() -> None:
    small = _answer({"i": 1})
    outcome = response.decode(small, now=0.0)
    assert isinstance(outcome, Ops)
    kept = response.limit_outputs(outcome, 1024, answer_bytes=len(small.body))
    assert kept is outcome
    big = _answer("y" * 4096)
    outcome = response.decode(big, now=0.0)
    failed = response.limit_outputs(outcome, 1024, answer_bytes=len(big.body))
    assert isinstance(failed, Failed)
    assert failed.error["name"] == "StepOutputTooLarge"
    assert failed.no_retry


def test_an_answer_near_the_limit_is_measured() -> None:
    # 20 bytes of output in a 120-byte answer under a 100-byte limit: measured, and kept
    answer = _answer("y" * 18)
    outcome = response.decode(answer, now=0.0)
    assert len(answer.body) * response._GROWTH > 100
    assert response.limit_outputs(outcome, 100, answer_bytes=len(answer.body)) is outcome
    assert isinstance(response.limit_outputs(outcome, 10, answer_bytes=len(answer.body)), Failed)


@pytest.mark.parametrize(
    ("field", "text"),
    [("id", "a\\u0000b"), ("name", "\\ud800"), ("displayName", "x\\udfffy"), ("id", "\\u0000")],
)
def test_escaped_nul_and_lone_surrogates_are_still_refused(field: str, text: str) -> None:
    op = {"op": "StepRun", "id": "s", "name": "s", "displayName": "s", "data": 1}
    body = json.dumps([op]).replace(f'"{field}": "{op[field]}"', f'"{field}": "{text}"')
    assert text in body
    outcome = response.decode(RawResponse(206, SDK, body.encode()), now=0.0)
    assert isinstance(outcome, Failed), outcome
    # a NUL by the op check; a lone surrogate already by the strict JSON reading
    reason = "NUL or lone surrogates" if "u0000" in text else "body is not JSON"
    assert reason in outcome.error["message"]


def test_escapes_that_decode_to_storable_text_pass() -> None:
    op = {"op": "StepRun", "id": "s", "name": "caf\\u00e9", "displayName": "s", "data": 1}
    body = json.dumps([op]).replace("\\\\u", "\\u").encode()
    outcome = response.decode(RawResponse(206, SDK, body), now=0.0)
    assert isinstance(outcome, Ops)
    assert outcome.ops[0].name == "café"
