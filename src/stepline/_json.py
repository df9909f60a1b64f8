"""JSON on the hot paths: orjson when it is installed, the standard library otherwise.

Both backends give the same values back. orjson is used where it cannot change them,
and the standard library where it could:

* encoding: anything orjson refuses (integers beyond 64 bits, dict keys that are not
  strings, strings holding lone surrogates) is encoded by ``json`` instead. orjson
  writes non-ASCII text as UTF-8 rather than ``\\u`` escapes (the same string once
  decoded) and has no ``NaN``: callers encode values that came from strict JSON, or
  check (``_serde.dumps`` does);
* decoding: a document with an integer of 19 or more digits (which orjson may turn
  into a float; digits inside a string are mostly told apart) and anything orjson
  refuses (``NaN``, ``1e400``, a byte order mark) are decoded by ``json``, which then
  accepts or refuses them as it always does.

``STEPLINE_JSON=stdlib`` in the environment keeps to the standard library (to compare,
or to rule orjson out). Canonical JSON for signatures (``_protocol.jcs``) and keys
compared across versions (``sort_keys``) stay on the standard library.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

try:
    if os.environ.get("STEPLINE_JSON", "").strip().lower() == "stdlib":
        raise ImportError("STEPLINE_JSON=stdlib: the standard library only")
    import orjson as _orjson
except ImportError:  # pragma: no cover - the dev extra installs it; tests cover both paths
    _orjson = None  # type: ignore[assignment]

#: Whether orjson is installed and used.
FAST = _orjson is not None

#: datetimes and dataclasses go to ``default`` as with ``json``, not orjson's own format.
_PASSTHROUGH = (
    (_orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME) if _orjson else 0
)
_LONG = 19  # digits in a row from which orjson may round an integer
#: What a number's first digit can follow in JSON (after an optional ``-``): the start
#: of an array, a value or a member, whitespace, or that ``-``.
_NUMBER_START = b"[,:- \t\n\r"
#: Digits to ``0``, the bytes a number can follow to ``+``, every other byte to a space:
#: an integer of 19 digits or more becomes ``_LONG_RUN`` (a table lookup and a substring
#: search: several times faster than a regex here). Digits inside a string mostly follow
#: a letter or the opening quote, and stay out of it: a hashed step id with 19 digits in
#: a row (one in about a thousand), or a numeric id kept as a string (a snowflake), does
#: not send a run's whole state to the standard library's decoder.
_DIGITS = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x2B if b in _NUMBER_START else 0x20 for b in range(256)
)
#: a long integer after a byte a number can follow, translated
_LONG_RUN = b"+" + b"0" * _LONG
#: a document that is a long integer: no byte before its first digit
_LONG_START = b"0" * _LONG
# Byte strings are searched with ``find``, never ``needle in data``: ``in`` first tries
# the needle as an integer (one byte's value) and builds, formats and drops a
# ``TypeError`` before it searches (about 2,000 instructions each, on every document).
_COMPACT = (",", ":")

Default = Callable[[Any], Any]


def dumpb(value: object, *, default: Default | None = None, finite: bool = False) -> bytes:
    """``value`` as compact UTF-8 JSON.

    Args:
        value: what to encode.
        default: called for objects JSON has no form for; returns one that it has.
        finite: refuse ``NaN`` and infinities (``ValueError``) instead of writing them
            (``json`` writes ``NaN``, orjson ``null``).

    Raises:
        TypeError: something JSON cannot carry (and ``default`` did not convert).
        ValueError: a circular reference, or a non-finite float with ``finite``.
    """
    if _orjson is not None:
        try:
            raw = _orjson.dumps(value, default=default, option=_PASSTHROUGH)
        except _orjson.JSONEncodeError:
            pass  # the standard library either encodes it or says why not
        else:
            if not (finite and raw.find(b"null") >= 0 and _non_finite(value)):  # NaN: refused
                return raw
    text = json.dumps(value, separators=_COMPACT, default=default, allow_nan=not finite)
    return text.encode()


def dumps(value: object, *, default: Default | None = None, finite: bool = False) -> str:
    """``value`` as compact JSON text (see ``dumpb``)."""
    if _orjson is not None:  # ``dumpb``'s usual case inline: a step writes several
        try:
            raw = _orjson.dumps(value, default=default, option=_PASSTHROUGH)
        except _orjson.JSONEncodeError:
            pass
        else:
            if not (finite and raw.find(b"null") >= 0 and _non_finite(value)):
                return raw.decode()
    return dumpb(value, default=default, finite=finite).decode()


def loads(
    data: str | bytes | bytearray | memoryview, *, slow: Callable[[Any], Any] = json.loads
) -> Any:
    """Decode a JSON document; ``slow`` (``json.loads``) decides what orjson cannot.

    orjson's answer is taken only when it is the one ``json`` would give; otherwise
    (see the module's doc) ``slow(data)`` decodes, or refuses, the document.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``, ``UnicodeDecodeError``), or
            whatever ``slow`` raises.
    """
    if _orjson is not None:
        # an integer of 19 digits: orjson may not keep it exact (checked inline: a step
        # decodes several documents)
        if len(data) < _LONG:
            long = False
        else:
            digits: bytes | bytearray
            if isinstance(data, str):
                digits = data.encode("utf-8", "surrogatepass").translate(_DIGITS)
            else:
                raw = data.tobytes() if isinstance(data, memoryview) else data
                digits = raw.translate(_DIGITS)
            long = digits.find(_LONG_RUN) >= 0 or digits.startswith(_LONG_START)
        if not long:
            try:
                return _orjson.loads(data)
            except _orjson.JSONDecodeError:
                pass  # NaN, 1e400, a BOM or an error: json decides and words it
    return slow(data.tobytes() if isinstance(data, memoryview) else data)


def loads_or_none(data: bytes) -> object:
    """``loads(data)``, or None when ``data`` is not JSON (an answer read for its detail)."""
    try:
        parsed: object = loads(data)
    except ValueError:
        return None
    return parsed


#: Types whose values orjson writes as JSON does, with no float inside (subclasses are
#: looked at one by one: an ``int`` subclass may be an enum, a ``str`` one anything)
_PLAIN: frozenset[type] = frozenset({str, int, bool, type(None)})


def _non_finite(value: object) -> bool:
    """Whether ``value`` holds a NaN or an infinity (orjson writes them as ``null``).

    The exact built-in types are told apart by ``type`` first, one test each: most of a
    document is strings, numbers and ``None``, which ``isinstance`` would test four
    times over. What is not one of them is judged by ``isinstance``, as a subclass may be.
    """
    stack: list[Any] = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind is dict:
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            extend(item.values())
        elif isinstance(item, list | tuple):
            extend(item)
        elif not isinstance(item, str | int | bool | None):
            return True  # an object orjson serialised its own way: json decides
    return False


__all__ = ["FAST", "dumpb", "dumps", "loads", "loads_or_none"]
