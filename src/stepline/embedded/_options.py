"""The engine settings an ``EmbeddedEngine`` is given, checked when it is built.

Settings in seconds also take what the CLI takes: ``retention`` a duration such as ``7d``
or ``12h`` (``0``/``off`` keeps everything, as ``--retention``), the others a duration
such as ``30s`` or ``5m``, a number of seconds (``--shutdown-grace 30``) or a
``timedelta``. A name the engine does not know, or a value it cannot take, is a
``ConfigError`` at construction (at ``serve()``, at Django's startup), not the engine
thread's crash on first use.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any

from stepline import _errors
from stepline._protocol import durations

__all__ = ["DURATIONS", "check"]

#: ``EngineSettings`` fields in seconds, each with an example of a valid value.
DURATIONS = {
    "retention": "7d",
    "shutdown_grace": "30s",
    "call_timeout": "15m",
    "lease_seconds": "30s",
    "poll_interval": "1s",
    "app_poll_interval": "5s",
    "retry_jitter": "30s",
}


def check(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every duration in seconds.

    Raises:
        ConfigError: a setting ``EngineSettings`` does not have, or a duration that is
            malformed or negative; the message names the setting and a valid value.
    """
    from stepline.engine import EngineSettings

    known = {field.name for field in dataclasses.fields(EngineSettings)}
    unknown = sorted(name for name in settings if name not in known)
    if unknown:
        raise _errors.ConfigError(
            f"unknown embedded engine settings {unknown}; known: {sorted(known)}"
        )
    return {
        name: seconds(name, value) if name in DURATIONS else value
        for name, value in settings.items()
    }


def seconds(name: str, value: object) -> float:
    """Seconds from the setting ``name``'s value (a number, a duration or a timedelta).

    Raises:
        ConfigError: naming ``name`` and an example of a valid value.
    """
    if isinstance(value, datetime.timedelta):
        found: float | None = value.total_seconds()
    elif isinstance(value, bool):
        found = None
    elif isinstance(value, (int, float)):
        found = float(value)
    elif isinstance(value, str):
        found = _parse(name, value)
    else:
        found = None
    if found is None or not (math.isfinite(found) and found >= 0):
        raise _errors.ConfigError(_problem(name, f"got {value!r}"))
    return found


def _parse(name: str, text: str) -> float:
    from stepline.engine._config import EngineConfigError, parse_retention

    if name == "retention":  # exactly as --retention and STEPLINE_RETENTION read it
        try:
            return parse_retention(text, name)
        except EngineConfigError as exc:
            raise _errors.ConfigError(f"{exc} (e.g. retention='7d')") from None
    try:
        return float(text)  # seconds, as --shutdown-grace and STEPLINE_SHUTDOWN_GRACE
    except ValueError:
        pass
    try:
        return durations.parse_duration(text).total_seconds()
    except ValueError as exc:
        raise _errors.ConfigError(_problem(name, str(exc))) from None


def _problem(name: str, detail: str) -> str:
    keep = " or 0/off to keep everything" if name == "retention" else ""
    return (
        f"embedded engine setting {name}: {detail}; want a duration such as "
        f"{name}={DURATIONS[name]!r}, seconds >= 0, or a timedelta{keep}"
    )
