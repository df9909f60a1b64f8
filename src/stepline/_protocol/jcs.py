"""RFC 8785 JSON Canonicalization Scheme (JCS), pure Python.

The Inngest server canonicalizes a request body with JCS before signing it, so a
signature check that fails on the raw bytes is retried on the canonical form.

Numbers follow the RFC: every JSON number is an IEEE 754 double written the way
ECMAScript's ``Number.prototype.toString`` writes it. Integers within +/-2**53 are exact
and written as integers; larger Python ints are rounded to the nearest double first,
as a JCS implementation in any other language (Go's ``gowebpki/jcs`` included) does.
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable

__all__ = ["canonicalize", "canonicalize_bytes"]

# The C-accelerated encoder behind ``json.dumps(..., ensure_ascii=False)``. It escapes
# exactly what RFC 8785 §3.2.2.2 asks for: ``"``, ``\\`` and U+0000..U+001F, with the
# ``\b \t \n \f \r`` short forms and lowercase ``\u00xx`` for the other control chars.
_quote: Callable[[str], str] = json.encoder.encode_basestring

_MAX_SAFE_INT = 2**53


def canonicalize(value: object) -> bytes:
    """Serialize a JSON-compatible value in RFC 8785 canonical form.

    Args:
        value: ``None``, ``bool``, ``int``, ``float``, ``str``, a ``list`` or ``tuple``
            of values, or a ``dict`` with ``str`` keys (subclasses accepted).

    Returns:
        The canonical UTF-8 bytes: no whitespace, object members sorted by the UTF-16
        code units of their names, numbers in ECMAScript form.

    Raises:
        ValueError: a float is NaN or infinite, an int does not fit a double, or a
            string holds a lone surrogate.
        TypeError: a value (or an object key) has a type JSON cannot represent.
    """
    parts: list[str] = []
    _write(value, parts.append)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("JCS: string contains a lone surrogate (not valid Unicode)") from None


def canonicalize_bytes(body: bytes) -> bytes:
    """Parse JSON bytes and return them in RFC 8785 canonical form.

    Args:
        body: a UTF-8 JSON document.

    Returns:
        The canonical UTF-8 bytes of the same document.

    Raises:
        ValueError: ``body`` is not valid UTF-8 JSON, uses ``NaN``/``Infinity``, or
            holds a number or string JCS cannot represent.
    """
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JCS: JSON nested too deeply") from None
    # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors already.
    try:
        return canonicalize(value)
    except RecursionError:
        raise ValueError("JCS: JSON nested too deeply") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"JCS: {name} is not a valid JSON number")


def _write(value: object, out: Callable[[str], object]) -> None:
    # Exact-type checks first: they are the common case and cheaper than isinstance.
    if type(value) is str:
        out(_quote(value))
    elif value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif type(value) is int:
        out(_format_int(value))
    elif type(value) is float:
        out(_format_float(value))
    elif type(value) is dict:
        _write_object(value, out)
    elif type(value) is list or type(value) is tuple:
        _write_array(value, out)
    elif isinstance(value, str):
        out(_quote(str(value)))
    elif isinstance(value, int):  # bool is an int, but True/False matched above
        out(_format_int(int(value)))
    elif isinstance(value, float):
        out(_format_float(float(value)))
    elif isinstance(value, dict):
        _write_object(value, out)
    elif isinstance(value, (list, tuple)):
        _write_array(value, out)
    else:
        raise TypeError(f"JCS: cannot serialize a value of type {type(value).__name__}")


def _write_array(items: list[object] | tuple[object, ...], out: Callable[[str], object]) -> None:
    out("[")
    first = True
    for item in items:
        if first:
            first = False
        else:
            out(",")
        _write(item, out)
    out("]")


def _write_object(members: dict[object, object], out: Callable[[str], object]) -> None:
    names: list[str] = []
    for name in members:
        if not isinstance(name, str):
            raise TypeError(f"JCS: object keys must be str, not {type(name).__name__}")
        names.append(name)
    # Code point order equals UTF-16 code unit order unless a name has a character
    # above U+FFFF (a surrogate pair in UTF-16); one C-level check skips the slow sort.
    if "".join(names).isascii():
        names.sort()
    else:
        names.sort(key=_utf16_units)
    out("{")
    first = True
    for name in names:
        if first:
            first = False
        else:
            out(",")
        out(_quote(name))
        out(":")
        _write(members[name], out)
    out("}")


def _utf16_units(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequence of 16-bit code units.
    return name.encode("utf-16-be", "surrogatepass")


def _format_int(number: int) -> str:
    if -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT:
        return str(number)
    try:
        return _format_float(float(number))
    except OverflowError:
        raise ValueError("JCS: integer is too large for an IEEE 754 double") from None


def _format_float(number: float) -> str:
    """ECMAScript ``Number.prototype.toString`` for a finite double."""
    if not math.isfinite(number):
        raise ValueError(f"JCS: {number!r} is not a valid JSON number")
    if number == 0:
        return "0"  # also for -0.0
    # Python's repr and ECMAScript both pick the shortest digit string that round-trips
    # (closest to the exact value on ties); only the layout differs.
    text = repr(number)
    mantissa, _, exponent = text.partition("e")
    if not exponent:
        # repr is positional for 1e-4 <= |x| < 1e16, a range ECMAScript also writes
        # positionally; only the trailing ".0" of integral values has to go.
        return mantissa[:-2] if mantissa.endswith(".0") else mantissa
    sign = ""
    if mantissa[0] == "-":
        sign = "-"
        mantissa = mantissa[1:]
    # repr's exponent form has exactly one non-zero digit before the point.
    digits = mantissa.replace(".", "").rstrip("0")
    point = int(exponent) + 1  # decimal point position relative to the first digit
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = point - 1
    fraction = "." + digits[1:] if count > 1 else ""
    return f"{sign}{digits[0]}{fraction}e{'+' if power >= 0 else '-'}{abs(power)}"
