"""Flow-control rules of a registered function, parsed from its config. Pure.

Field names follow the registration body (PROTOCOL.md §2.3), the same keys the official
SDKs send: ``concurrency``, ``throttle``, ``rateLimit``, ``debounce``, ``batchEvents``,
``priority``, ``singleton``. A bad rule is a :class:`RegistrationError` naming the
function and the option, answered with 400 at sync time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from stepline import _cel
from stepline._protocol import durations

EVENT_VARS = ("event",)
#: At most this many concurrency limits per function, as on Inngest's server.
MAX_CONCURRENCY_LIMITS = 2
#: The range a priority expression's value is clamped to, in seconds.
MAX_PRIORITY = 600
#: The most events one batch can hold.
MAX_BATCH_SIZE = 1000
_DAY = 86_400.0


class RegistrationError(ValueError):
    """A registration body the engine cannot accept (answered with 400)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConcurrencyRule:
    """At most ``limit`` steps of runs sharing a key execute at once.

    ``scope`` is ``fn`` (the key counts within this function), ``env`` or ``account``
    (the key counts across every function declaring it; the engine is one environment,
    so both are engine-wide, but they are separate counters).
    """

    limit: int
    scope: str = "fn"
    key: _cel.Program | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ThrottleRule:
    """At most ``limit`` run starts per ``period`` (plus ``burst`` at once); excess waits."""

    limit: int
    period: float
    burst: int = 0
    key: _cel.Program | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitRule:
    """At most ``limit`` runs per ``period`` seconds per key; excess events start nothing."""

    limit: int
    period: float
    key: _cel.Program | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DebounceRule:
    """Start once events for a key stop for ``period``, or ``timeout`` after the first."""

    period: float
    timeout: float | None = None
    key: _cel.Program | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class BatchRule:
    """Gather up to ``max_size`` events per key, for at most ``timeout``, into one run."""

    max_size: int
    timeout: float
    key: _cel.Program | None = None
    condition: _cel.Program | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SingletonRule:
    """One active run per key: ``skip`` the new one, or ``cancel`` the old one."""

    mode: str
    key: _cel.Program | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FlowRules:
    """Every flow-control rule of one function (empty when it declares none)."""

    concurrency: tuple[ConcurrencyRule, ...] = ()
    throttle: ThrottleRule | None = None
    rate_limit: RateLimitRule | None = None
    debounce: DebounceRule | None = None
    batch: BatchRule | None = None
    priority: _cel.Program | None = None
    singleton: SingletonRule | None = None


def parse_flow(where: str, raw: Mapping[str, Any]) -> FlowRules:
    """Parse the flow-control keys of one function's config.

    Raises:
        RegistrationError: a rule is malformed; the message names ``where`` and the key.
    """
    rules = FlowRules(
        concurrency=_concurrency(where, raw.get("concurrency")),
        throttle=_throttle(where, raw.get("throttle")),
        rate_limit=_rate_limit(where, raw.get("rateLimit")),
        debounce=_debounce(where, raw.get("debounce")),
        batch=_batch(where, raw.get("batchEvents")),
        priority=_priority(where, raw.get("priority")),
        singleton=_singleton(where, raw.get("singleton")),
    )
    if rules.batch is not None and rules.debounce is not None:
        raise RegistrationError(f"{where}: batchEvents cannot be combined with debounce")
    return rules


def _object(where: str, name: str, raw: object) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RegistrationError(f"{where}: {name} must be an object")
    return raw


def _int(where: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RegistrationError(f"{where} must be an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise RegistrationError(f"{where} must be at most {maximum}")
    return value


def _period(where: str, value: object, *, low: float, high: float, text: str) -> float:
    seconds = duration(where, value)
    if seconds is None or not low <= seconds <= high:
        raise RegistrationError(f"{where} must be between {text}")
    return seconds


def _concurrency(where: str, raw: object) -> tuple[ConcurrencyRule, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_CONCURRENCY_LIMITS:
        raise RegistrationError(
            f"{where}: concurrency allows at most {MAX_CONCURRENCY_LIMITS} limits"
        )
    rules: list[ConcurrencyRule] = []
    for entry in items:
        item = {"limit": entry} if isinstance(entry, int) and not isinstance(entry, bool) else entry
        if not isinstance(item, dict):
            raise RegistrationError(f"{where}: each concurrency limit must be an object")
        limit = _int(f"{where}: concurrency.limit", item.get("limit"), minimum=0)
        scope = item.get("scope") or "fn"
        if scope not in ("fn", "env", "account"):
            raise RegistrationError(f"{where}: concurrency.scope must be fn, env or account")
        key = expression(f"{where}: concurrency.key", item.get("key"), EVENT_VARS)
        if limit > 0:  # 0 means "no limit", as on Inngest's server
            rules.append(ConcurrencyRule(limit, str(scope), key))
    return tuple(rules)


def _throttle(where: str, raw: object) -> ThrottleRule | None:
    body = _object(where, "throttle", raw)
    if body is None:
        return None
    limit = _int(f"{where}: throttle.limit", body.get("limit"), minimum=1)
    period = _period(
        f"{where}: throttle.period", body.get("period"), low=1, high=7 * _DAY, text="1s and 7d"
    )
    burst = body.get("burst")
    burst = 0 if burst is None else _int(f"{where}: throttle.burst", burst, minimum=0)
    key = expression(f"{where}: throttle.key", body.get("key"), EVENT_VARS)
    return ThrottleRule(limit, period, burst, key)


def _rate_limit(where: str, raw: object) -> RateLimitRule | None:
    body = _object(where, "rateLimit", raw)
    if body is None:
        return None
    limit = _int(f"{where}: rateLimit.limit", body.get("limit"), minimum=1)
    period = _period(
        f"{where}: rateLimit.period", body.get("period"), low=1, high=_DAY, text="1s and 24h"
    )
    key = expression(f"{where}: rateLimit.key", body.get("key"), EVENT_VARS)
    return RateLimitRule(limit, period, key)


def _debounce(where: str, raw: object) -> DebounceRule | None:
    body = _object(where, "debounce", raw)
    if body is None:
        return None
    period = _period(
        f"{where}: debounce.period", body.get("period"), low=1, high=7 * _DAY, text="1s and 7d"
    )
    timeout = duration(f"{where}: debounce.timeout", body.get("timeout"))
    if timeout is not None and timeout < period:
        raise RegistrationError(f"{where}: debounce.timeout must not be shorter than its period")
    key = expression(f"{where}: debounce.key", body.get("key"), EVENT_VARS)
    return DebounceRule(period, timeout, key)


def _batch(where: str, raw: object) -> BatchRule | None:
    body = _object(where, "batchEvents", raw)
    if body is None:
        return None
    size = _int(
        f"{where}: batchEvents.maxSize", body.get("maxSize"), minimum=1, maximum=MAX_BATCH_SIZE
    )
    timeout = body.get("timeout")
    seconds = (
        60.0
        if timeout is None
        else _period(f"{where}: batchEvents.timeout", timeout, low=1, high=60, text="1s and 60s")
    )
    key = expression(f"{where}: batchEvents.key", body.get("key"), EVENT_VARS)
    condition = expression(f"{where}: batchEvents.if", body.get("if"), EVENT_VARS)
    return BatchRule(size, seconds, key, condition)


def _priority(where: str, raw: object) -> _cel.Program | None:
    body = _object(where, "priority", raw)
    if body is None:
        return None
    return expression(f"{where}: priority.run", body.get("run"), EVENT_VARS)


def _singleton(where: str, raw: object) -> SingletonRule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("mode") not in ("skip", "cancel"):
        raise RegistrationError(f"{where}: singleton.mode must be 'skip' or 'cancel'")
    key = expression(f"{where}: singleton.key", raw.get("key"), EVENT_VARS)
    return SingletonRule(str(raw["mode"]), key)


def expression(where: str, text: object, allowed: Iterable[str]) -> _cel.Program | None:
    """Compile an optional CEL expression, checking it only uses ``allowed`` variables."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise RegistrationError(f"{where} must be a string")
    try:
        return _cel.check(text, allowed=tuple(allowed))
    except _cel.ExpressionError as exc:
        raise RegistrationError(f"{where}: {exc}") from None


def duration(where: str, value: object) -> float | None:
    """An optional duration string like ``"30s"`` or ``"1h30m"``, in seconds."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RegistrationError(f"{where} must be a duration string like '30s'")
    try:
        return durations.parse_duration(value).total_seconds()
    except ValueError as exc:
        raise RegistrationError(f"{where}: {exc}") from None
