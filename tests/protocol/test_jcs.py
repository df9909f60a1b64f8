"""RFC 8785 canonicalization, checked against the RFC's own examples."""

from __future__ import annotations

import json
import struct
from collections import OrderedDict

import pytest

from stepline._protocol import jcs


def _double(bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


# RFC 8785 Appendix B: IEEE 754 bit pattern -> expected JSON text.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC_NUMBERS)
def test_rfc_number_table(bits: str, expected: str) -> None:
    assert jcs.canonicalize(_double(bits)) == expected.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e17, "150000000000000000"),
        (1e16, "10000000000000000"),
        (123e-20, "1.23e-18"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.00001, "0.00001"),
        (0.0001234, "0.0001234"),
        (-0.0, "0"),
        (2.0**60, "1152921504606847000"),
        (9007199254740994.0, "9007199254740994"),
        (5e-324, "5e-324"),
    ],
)
def test_float_layout_matches_ecmascript(value: float, expected: str) -> None:
    assert jcs.canonicalize(value) == expected.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (-7, "-7"),
        (2**53, "9007199254740992"),
        (-(2**53), "-9007199254740992"),
        # beyond 2**53 JCS numbers are doubles, as in every other implementation
        (2**60, "1152921504606847000"),
        (12345678901234567890, "12345678901234567000"),
        (10**21, "1e+21"),
    ],
)
def test_integers(value: int, expected: str) -> None:
    assert jcs.canonicalize(value) == expected.encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 10**400])
def test_non_finite_numbers_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="JCS"):
        jcs.canonicalize(value)
    with pytest.raises(ValueError, match="JCS"):
        jcs.canonicalize([{"a": value}])


def test_rfc_sorting_example_uses_utf16_code_units() -> None:
    # RFC 8785 §3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16,
    # although it is the larger code point.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    out = json.loads(jcs.canonicalize(value), object_pairs_hook=list)
    assert [v for _, v in out] == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_rfc_full_example() -> None:
    # RFC 8785 §3.2.4, input and expected output verbatim.
    source = (
        b"{\n"
        b'  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
        b'  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        b'  "literals": [null, true, false]\n'
        b"}"
    )
    expected = (
        '{"literals":[null,true,false],'
        '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert jcs.canonicalize_bytes(source) == expected


def test_string_escapes() -> None:
    text = '"\\\b\t\n\f\r\x00\x01\x1f\x7f/é\u2028😀'
    expected = '"\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u0001\\u001f\x7f/é\u2028😀"'
    assert jcs.canonicalize(text) == expected.encode("utf-8")


def test_no_whitespace_and_nested_sorting() -> None:
    value = {"b": [1, {"z": None, "a": True}], "a": {"y": "x", "x": []}, "": {}}
    assert jcs.canonicalize(value) == b'{"":{},"a":{"x":[],"y":"x"},"b":[1,{"a":true,"z":null}]}'


def test_subclasses_and_tuples() -> None:
    value = OrderedDict([("b", (1, 2)), ("a", False)])
    assert jcs.canonicalize(value) == b'{"a":false,"b":[1,2]}'


def test_unsupported_values_rejected() -> None:
    with pytest.raises(TypeError):
        jcs.canonicalize({1: "x"})
    with pytest.raises(TypeError):
        jcs.canonicalize({"a": {1, 2}})
    with pytest.raises(ValueError, match="surrogate"):
        jcs.canonicalize("\ud800")


def test_canonicalize_bytes_normalizes_layout() -> None:
    pretty = json.dumps({"b": 1.0, "a": [1e-7, "é"]}, indent=2).encode()
    assert jcs.canonicalize_bytes(pretty) == '{"a":[1e-7,"é"],"b":1}'.encode()


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"a":NaN}', b"[Infinity]", b"[1e400]", b"\xff", b"[1] x"],
)
def test_canonicalize_bytes_rejects_invalid_json(body: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json, codec and JCS errors all qualify
        jcs.canonicalize_bytes(body)


def test_canonical_output_is_a_fixed_point() -> None:
    body = b'{"z":[0.1,-0,1E2,"\\u00e9"],"a":{"c":1,"b":2}}'
    once = jcs.canonicalize_bytes(body)
    assert once == '{"a":{"b":2,"c":1},"z":[0.1,0,100,"é"]}'.encode()
    assert jcs.canonicalize_bytes(once) == once
