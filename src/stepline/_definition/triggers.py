"""Function triggers: events and cron schedules (PROTOCOL.md §2.3).

Cron expressions are parsed with :mod:`stepline._definition.cron`, the grammar the engine
reads, so a bad schedule fails when the function is defined, not at sync.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Sequence
from typing import Any

from stepline import _errors
from stepline._definition import checks, options
from stepline._definition import cron as _cron
from stepline._protocol import durations

__all__ = ["TriggerCron", "TriggerEvent", "triggers_to_wire"]

_MAX_JITTER = _dt.timedelta(minutes=5)


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
            checks.check_expression("TriggerEvent.expression", self.expression)

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
    jitter: options.DurationLike | None = None

    def __post_init__(self) -> None:
        _wire_cron(self.cron, self.timezone)
        if self.jitter is not None:
            jitter = checks.check_duration("TriggerCron.jitter", self.jitter, maximum=_MAX_JITTER)
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
    if timezone is not None:
        for prefix in _cron.TZ_PREFIXES:
            if text.startswith(prefix):
                raise _errors.ConfigError(
                    f"TriggerCron: pass the time zone as timezone={timezone!r} or as a "
                    f"{prefix} prefix in cron {cron!r}, not both"
                )
        _check_zone(timezone)
        # Spelled as a prefix so the schedule is parsed and rendered exactly like one.
        text = f"TZ={timezone} {text}"
    try:
        return _cron.parse(text).canonical
    except _cron.CronError as exc:
        raise _errors.ConfigError(f"TriggerCron.cron {cron!r}: {exc}") from exc


def _check_zone(zone: object) -> None:
    # ``object``: the dataclass does not stop a caller passing a non-string.
    if isinstance(zone, str):
        try:
            _cron.load_zone(zone)
        except _cron.CronError:
            pass
        else:
            return
    raise _errors.ConfigError(f"TriggerCron.timezone {zone!r} is not a known IANA time zone")
