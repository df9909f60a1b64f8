"""Validation helpers shared by option and trigger types; each raises ``ConfigError``."""

from __future__ import annotations

import datetime as _dt
from typing import Any, TypeVar

from stepline import _cel, _errors
from stepline._protocol import durations

_T = TypeVar("_T")
SECOND = _dt.timedelta(seconds=1)
DAY = _dt.timedelta(days=1)


def check_expression(where: str, text: str) -> None:
    """Check that ``text`` is a valid CEL expression by compiling it.

    Syntax, unknown functions, wrong argument counts and invalid literal regexes are
    caught here, at definition time; variables and types are only known at evaluation.

    Raises:
        ConfigError: ``text`` is not a string, is blank or does not compile; the message
            names the column and shows a caret under the problem.
    """
    check_type(where, text, str, "an expression string")
    if not text.strip():
        raise _errors.ConfigError(f"{where} must not be an empty expression")
    try:
        _cel.compile(text)
    except _cel.ExpressionError as exc:
        raise _errors.ConfigError(f"{where}: {exc}") from None


def check_duration(
    where: str,
    value: object,
    *,
    minimum: _dt.timedelta = SECOND,
    maximum: _dt.timedelta | None = None,
) -> _dt.timedelta:
    """Normalise a user duration and check it is whole seconds within bounds.

    Raises:
        ConfigError: wrong type, unparsable string, fractional seconds or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, _dt.timedelta | int | str):
        raise _errors.ConfigError(
            f"{where} must be a timedelta, int milliseconds or a duration string "
            f"such as '30s', got {value!r}"
        )
    try:
        delta = durations.to_timedelta(value)
    except ValueError as exc:
        raise _errors.ConfigError(f"{where}: {exc}") from None
    if delta % SECOND:
        raise _errors.ConfigError(f"{where} must be a whole number of seconds, got {value!r}")
    if delta < minimum:
        low = durations.format_duration(minimum)
        raise _errors.ConfigError(f"{where} must be at least {low}, got {value!r}")
    if maximum is not None and delta > maximum:
        high = durations.format_duration(maximum)
        raise _errors.ConfigError(f"{where} must be at most {high}, got {value!r}")
    return delta


def check_type(where: str, value: object, kind: type[Any], what: str) -> None:
    # bool is an int subclass; ``retries=True`` is a mistake, not 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _errors.ConfigError(f"{where} must be {what}, got {value!r}")


def check_int(where: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _errors.ConfigError(f"{where} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise _errors.ConfigError(f"{where} must be {bounds}, got {value!r}")


def check_optional(where: str, value: object, kind: type[_T]) -> None:
    if value is not None:
        check_type(where, value, kind, f"a {kind.__name__} or None")


def check_key(where: str, key: str | None) -> None:
    if key is not None:
        check_expression(where, key)


def normalise(obj: object, attr: str, delta: _dt.timedelta) -> None:
    object.__setattr__(obj, attr, delta)  # frozen dataclass: store the canonical timedelta
