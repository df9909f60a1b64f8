"""Function triggers: events and cron schedules (PROTOCOL.md §2.3).

Cron expressions are checked the way the engine parses them (robfig/cron with minute, hour,
day-of-month, month and day-of-week fields, an optional ``TZ=`` prefix and no seconds
field), so a bad schedule fails when the function is defined, not at sync.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from stepline import _checks, _errors, _options
from stepline._protocol import durations

__all__ = ["TriggerCron", "TriggerEvent", "triggers_to_wire"]

_MAX_JITTER = _dt.timedelta(minutes=5)
_TZ_PREFIXES = ("TZ=", "CRON_TZ=")
# The engine's parser has no descriptor support, so descriptors are sent as their fields.
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_NO_NAMES: Mapping[str, int] = {}
#: (field name, lowest, highest, accepted names) in cron order.
_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minute", 0, 59, _NO_NAMES),
    ("hour", 0, 23, _NO_NAMES),
    ("day-of-month", 1, 31, _NO_NAMES),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _WEEKDAYS),
)


@dataclasses.dataclass(frozen=True, slots=True)
class TriggerEvent:
    """Run the function for each event named ``event``.

    Args:
        event: event name, e.g. ``"app/user.created"``.
        expression: CEL condition on ``event`` that must hold for the run to start.
    """

    event: str
    expression: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not self.event.strip():
            raise _errors.ConfigError(
                f"TriggerEvent.event must be a non-empty event name, got {self.event!r}"
            )
        if self.expression is not None:
            _checks.check_expression("TriggerEvent.expression", self.expression)

    def to_wire(self) -> dict[str, Any]:
        """The ``triggers[]`` entry."""
        out: dict[str, Any] = {"event": self.event}
        if self.expression is not None:
            out["expression"] = self.expression
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class TriggerCron:
    """Run the function on a schedule.

    Args:
        cron: five fields (minute hour day-of-month month day-of-week), optionally after a
            ``TZ=Zone`` prefix, or one of ``@hourly @daily @midnight @weekly @monthly
            @yearly @annually``.
        timezone: IANA zone name the schedule is read in (instead of a ``TZ=`` prefix).
        jitter: random delay of each run, 1s to 5m.
    """

    cron: str
    timezone: str | None = None
    jitter: _options.DurationLike | None = None

    def __post_init__(self) -> None:
        _wire_cron(self.cron, self.timezone)
        if self.jitter is not None:
            jitter = _checks.check_duration("TriggerCron.jitter", self.jitter, maximum=_MAX_JITTER)
            object.__setattr__(self, "jitter", jitter)  # frozen: keep the canonical timedelta

    def to_wire(self) -> dict[str, Any]:
        """The ``triggers[]`` entry: ``{"cron": "TZ=<zone> <fields>", "jitter"?: "<dur>"}``."""
        out: dict[str, Any] = {"cron": _wire_cron(self.cron, self.timezone)}
        if self.jitter is not None:
            out["jitter"] = durations.format_duration(durations.to_timedelta(self.jitter))
        return out


def triggers_to_wire(triggers: Sequence[TriggerEvent | TriggerCron]) -> list[dict[str, Any]]:
    """The ``triggers`` array of a function config.

    Raises:
        ConfigError: no triggers, something that is not a trigger, a repeated cron
            schedule or a repeated identical trigger.
    """
    wire: list[dict[str, Any]] = []
    crons: set[str] = set()
    for trigger in _as_list(triggers):
        entry = trigger.to_wire()
        cron = entry.get("cron")
        if cron is not None:
            if cron in crons:
                raise _errors.ConfigError(f"triggers: the cron schedule {cron!r} is repeated")
            crons.add(cron)
        elif entry in wire:
            raise _errors.ConfigError(f"triggers: the trigger {entry!r} is repeated")
        wire.append(entry)
    return wire


def _as_list(triggers: object) -> list[TriggerEvent | TriggerCron]:
    if isinstance(triggers, TriggerEvent | TriggerCron):
        return [triggers]
    if isinstance(triggers, str | bytes) or not isinstance(triggers, Sequence):
        raise _errors.ConfigError(f"triggers must be a list of triggers, got {triggers!r}")
    if not triggers:
        raise _errors.ConfigError("triggers: a function needs at least one trigger")
    for item in triggers:
        if not isinstance(item, TriggerEvent | TriggerCron):
            raise _errors.ConfigError(
                f"triggers must hold TriggerEvent or TriggerCron objects, got {item!r}"
            )
    return list(triggers)


def _wire_cron(cron: str, timezone: str | None) -> str:
    """Validate a cron trigger and render it as the engine reads it."""
    if not isinstance(cron, str) or not cron.strip():
        raise _errors.ConfigError(f"TriggerCron.cron must be a non-empty string, got {cron!r}")
    text = cron.strip()
    zone = timezone
    for prefix in _TZ_PREFIXES:
        if text.startswith(prefix):
            if timezone is not None:
                raise _errors.ConfigError(
                    f"TriggerCron: pass the time zone as timezone={timezone!r} or as a "
                    f"{prefix} prefix in cron {cron!r}, not both"
                )
            parts = text[len(prefix) :].split(None, 1)
            zone = parts[0] if parts else ""
            text = parts[1] if len(parts) == 2 else ""
            break
    if zone is not None:
        _check_zone(zone)
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise _errors.ConfigError(
                f"TriggerCron.cron {cron!r}: unsupported descriptor {text!r}; use one of "
                f"{', '.join(_DESCRIPTORS)} or five fields"
            )
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise _errors.ConfigError(
            f"TriggerCron.cron {cron!r} must have 5 fields (minute hour day-of-month month "
            f"day-of-week; no seconds field), got {len(fields)}"
        )
    for value, spec in zip(fields, _FIELDS, strict=True):
        _check_field(cron, value, spec)
    body = " ".join(fields)
    return f"TZ={zone} {body}" if zone is not None else body


def _check_zone(zone: object) -> None:
    valid = isinstance(zone, str) and bool(zone)
    if valid:
        try:
            zoneinfo.ZoneInfo(str(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            valid = False
    if not valid:
        raise _errors.ConfigError(f"TriggerCron.timezone {zone!r} is not a known IANA time zone")


def _check_field(cron: str, text: str, spec: tuple[str, int, int, Mapping[str, int]]) -> None:
    name, low, high, names = spec

    def fail(reason: str) -> _errors.ConfigError:
        return _errors.ConfigError(f"TriggerCron.cron {cron!r}: {name} field {text!r} {reason}")

    def number(token: str) -> int:
        if token.isascii() and token.isdigit():
            return int(token)
        if token.lower() in names:
            return names[token.lower()]
        raise fail(f"has {token!r}, which is not a number" + (" or a name" if names else ""))

    for part in text.split(","):
        span, slash, step = part.partition("/")
        if slash and not (step.isascii() and step.isdigit() and int(step) > 0):
            raise fail(f"has step {step!r}; a step must be a positive number")
        if span in ("*", "?"):
            continue
        first, dash, last = span.partition("-")
        start = number(first)
        end = number(last) if dash else (high if slash else start)
        if start < low or end > high:
            hint = " (use 0 for Sunday)" if name == "day-of-week" and end == 7 else ""
            raise fail(f"is outside {low}-{high}{hint}")
        if start > end:
            raise fail(f"has the range {span!r}, which runs backwards")
