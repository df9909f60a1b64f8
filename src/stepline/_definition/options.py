"""Function options: flow control, cancellation, timeouts (PROTOCOL.md §2.3).

Each option validates itself when built and raises :class:`~stepline._errors.ConfigError`
naming the option and the bad value, so a typo fails at import time rather than at sync.
Durations are stored as ``timedelta`` whatever the user passed; ``to_wire()`` renders the
registration shape.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

from stepline import _errors
from stepline._definition import checks
from stepline._protocol import durations

__all__ = [
    "Batch",
    "Cancel",
    "Concurrency",
    "Debounce",
    "DurationLike",
    "FunctionOptions",
    "NondeterminismPolicy",
    "Priority",
    "RateLimit",
    "Singleton",
    "Throttle",
    "Timeouts",
    "VersioningPolicy",
]

#: What users may pass wherever a duration is expected: ``timedelta``, int ms or ``"5m"``.
DurationLike = _dt.timedelta | int | str
#: A function's answer to a replay that no longer matches its recorded steps.
NondeterminismPolicy = Literal["warn", "fail"]
#: Where a run goes once the app version it started on is no longer registered.
VersioningPolicy = Literal["pinned", "latest"]

_MAX_CONCURRENCY = 2  # the engine's MaxConcurrencyLimits
_MAX_RETRIES = 20
_T = TypeVar("_T")


_WIRE_NAMES = {"if_exp": "if", "max_size": "maxSize"}


class _Option:
    """Base of the option dataclasses: one ``to_wire`` for all of them."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_wire(self) -> dict[str, Any]:
        """The registration shape: set fields only, durations as ``"5m"`` strings."""
        out: dict[str, Any] = {}
        for attr in self.__dataclass_fields__:
            value = getattr(self, attr)
            if isinstance(value, _dt.datetime):
                value = durations.format_timestamp(value)
            elif isinstance(value, _dt.timedelta):
                value = durations.format_duration(value)
            if value is not None:
                out[_WIRE_NAMES.get(attr, attr)] = value
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Concurrency(_Option):
    """At most ``limit`` steps of matching runs execute at once.

    Args:
        limit: slots, at least 1.
        key: CEL expression (``event`` = triggering event) sharding the limit.
        scope: ``"fn"`` (default), ``"env"`` or ``"account"``; the wider scopes need a key.
    """

    limit: int
    key: str | None = None
    scope: Literal["fn", "env", "account"] | None = None

    def __post_init__(self) -> None:
        if type(self.limit) is int and self.limit == 0:
            raise _errors.ConfigError(
                "Concurrency.limit must be >= 1, got 0 (0 means unlimited on the engine; "
                "omit concurrency instead)"
            )
        checks.check_int("Concurrency.limit", self.limit, minimum=1)
        checks.check_key("Concurrency.key", self.key)
        if self.scope is not None and self.scope not in ("fn", "env", "account"):
            raise _errors.ConfigError(
                f"Concurrency.scope must be 'fn', 'env' or 'account', got {self.scope!r}"
            )
        if self.scope in ("env", "account") and self.key is None:
            raise _errors.ConfigError(f"Concurrency.scope={self.scope!r} requires a key")


@dataclasses.dataclass(frozen=True, slots=True)
class Throttle(_Option):
    """Start at most ``limit`` runs per ``period``; excess runs are queued, not dropped.

    Args:
        limit: runs per period, at least 1.
        period: 1s to 7d.
        key: CEL expression giving a separate throttle per value.
        burst: runs allowed to start at once on top of ``limit``, at least 1 (omitted:
            the engine allows ``limit`` at once, then one every ``period / limit``).
    """

    limit: int
    period: DurationLike
    key: str | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        checks.check_int("Throttle.limit", self.limit, minimum=1)
        period = checks.check_duration("Throttle.period", self.period, maximum=7 * checks.DAY)
        checks.normalise(self, "period", period)
        checks.check_key("Throttle.key", self.key)
        if self.burst is not None:
            checks.check_int("Throttle.burst", self.burst, minimum=1)


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit(_Option):
    """Start at most ``limit`` runs per ``period``; excess runs are dropped.

    Args:
        limit: runs per period, at least 1.
        period: 1s to 24h.
        key: CEL expression giving a separate limit per value.
    """

    limit: int
    period: DurationLike
    key: str | None = None

    def __post_init__(self) -> None:
        checks.check_int("RateLimit.limit", self.limit, minimum=1)
        checks.normalise(
            self,
            "period",
            checks.check_duration("RateLimit.period", self.period, maximum=checks.DAY),
        )
        checks.check_key("RateLimit.key", self.key)


@dataclasses.dataclass(frozen=True, slots=True)
class Debounce(_Option):
    """Run once after matching events stop arriving for ``period``.

    Args:
        period: quiet time, 1s to 7d; each new event restarts it.
        key: CEL expression giving a separate debounce per value.
        timeout: the longest total delay, at least ``period``.
    """

    period: DurationLike
    key: str | None = None
    timeout: DurationLike | None = None

    def __post_init__(self) -> None:
        period = checks.check_duration("Debounce.period", self.period, maximum=7 * checks.DAY)
        checks.normalise(self, "period", period)
        checks.check_key("Debounce.key", self.key)
        if self.timeout is not None:
            timeout = checks.check_duration("Debounce.timeout", self.timeout)
            if timeout < period:
                raise _errors.ConfigError(
                    f"Debounce.timeout ({durations.format_duration(timeout)}) must not be "
                    f"shorter than Debounce.period ({durations.format_duration(period)})"
                )
            checks.normalise(self, "timeout", timeout)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch(_Option):
    """Hand the function up to ``max_size`` events at once.

    Args:
        max_size: 1 to 100 events.
        timeout: how long a partial batch waits, 1s to 60s.
        key: CEL expression giving a separate batch per value.
        if_exp: CEL condition; events failing it are run unbatched.
    """

    max_size: int
    timeout: DurationLike
    key: str | None = None
    if_exp: str | None = None

    def __post_init__(self) -> None:
        checks.check_int("Batch.max_size", self.max_size, minimum=1, maximum=100)
        timeout = checks.check_duration("Batch.timeout", self.timeout, maximum=60 * checks.SECOND)
        checks.normalise(self, "timeout", timeout)
        checks.check_key("Batch.key", self.key)
        checks.check_key("Batch.if_exp", self.if_exp)


@dataclasses.dataclass(frozen=True, slots=True)
class Priority(_Option):
    """Queue priority.

    Args:
        run: CEL expression returning seconds (-600..600) to jump the queue by.
    """

    run: str

    def __post_init__(self) -> None:
        checks.check_expression("Priority.run", self.run)


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel(_Option):
    """Cancel a run when a matching event arrives.

    Args:
        event: name of the cancelling event.
        if_exp: CEL condition; ``event`` is the run's trigger, ``async`` the cancel event.
        timeout: how long the cancellation stays armed (a duration of at least 1s, or an
            absolute ``datetime``; naive means UTC); the engine defaults to a year.
    """

    event: str
    if_exp: str | None = None
    timeout: DurationLike | _dt.datetime | None = None

    def __post_init__(self) -> None:
        checks.check_type("Cancel.event", self.event, str, "an event name")
        if not self.event.strip():
            raise _errors.ConfigError("Cancel.event must not be empty")
        checks.check_key("Cancel.if_exp", self.if_exp)
        if self.timeout is not None and not isinstance(self.timeout, _dt.datetime):
            checks.normalise(self, "timeout", checks.check_duration("Cancel.timeout", self.timeout))


@dataclasses.dataclass(frozen=True, slots=True)
class Singleton(_Option):
    """Allow one active run at a time (per ``key``).

    Args:
        mode: ``"skip"`` drops the new run; ``"cancel"`` cancels the active one.
        key: CEL expression giving a separate singleton per value.
    """

    mode: Literal["skip", "cancel"]
    key: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("skip", "cancel"):
            raise _errors.ConfigError(
                f"Singleton.mode must be 'skip' or 'cancel', got {self.mode!r}"
            )
        checks.check_key("Singleton.key", self.key)


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts(_Option):
    """Bound how long a run waits to start, runs in all, and each step or call takes.

    Args:
        start: longest wait in the queue before the first attempt starts.
        finish: longest time from start to completion.
        step: longest one attempt of a ``step.run``'s code may take, unless the step
            sets its own ``timeout=``; past it the attempt fails with ``StepTimeoutError``
            (retries apply). Enforced by the SDK; sent as ``timeouts.step``.
        call: longest the engine waits for one call to the app (any SDK); past it the
            attempt fails and is retried. Sent as ``timeouts.call``; the engine's
            ``call_timeout`` (15 minutes) when unset. Keep it above ``step``.
    """

    start: DurationLike | None = None
    finish: DurationLike | None = None
    step: DurationLike | None = None
    call: DurationLike | None = None

    def __post_init__(self) -> None:
        if all(getattr(self, attr) is None for attr in ("start", "finish", "step", "call")):
            raise _errors.ConfigError("Timeouts needs at least one of start, finish, step, call")
        for attr in ("start", "finish", "step", "call"):
            value = getattr(self, attr)
            if value is not None:
                checks.normalise(self, attr, checks.check_duration(f"Timeouts.{attr}", value))


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionOptions:
    """Everything a function carries besides its id, triggers and handler.

    Prefer :meth:`build`, which accepts the looser forms users write.

    Args:
        name: display name (defaults to the function id at registration).
        description: free text shown in the dashboard.
        retries: retries after the first attempt, 0 to 20 (engine default 4).
        concurrency: up to two limits.
        throttle: queue excess runs.
        rate_limit: drop excess runs.
        debounce: delay until events stop.
        batch_events: run on batches of events.
        priority: queue priority.
        cancel: cancellation events.
        idempotency: CEL key; one run per key per 24h.
        singleton: one active run at a time.
        timeouts: start/finish deadlines.
        nondeterminism: what a replay that no longer matches the recorded steps does:
            ``"warn"`` (default: log, record a notice on the run, go on) or ``"fail"``
            (fail the run at once with ``NonDeterminismError``). Not sent to the engine.
        versioning: where the engine sends a run's calls once the app version it
            started on is gone: ``"pinned"`` (keep it on that version) or ``"latest"``
            (move it to the newest); ``None`` leaves the engine's default (pinned).
    """

    name: str | None = None
    description: str | None = None
    retries: int | None = None
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch_events: Batch | None = None
    priority: Priority | None = None
    cancel: tuple[Cancel, ...] = ()
    idempotency: str | None = None
    singleton: Singleton | None = None
    timeouts: Timeouts | None = None
    nondeterminism: NondeterminismPolicy = "warn"
    versioning: VersioningPolicy | None = None

    def __post_init__(self) -> None:
        for attr, kind in (
            ("name", str),
            ("description", str),
            ("throttle", Throttle),
            ("rate_limit", RateLimit),
            ("debounce", Debounce),
            ("batch_events", Batch),
            ("priority", Priority),
            ("singleton", Singleton),
            ("timeouts", Timeouts),
        ):
            checks.check_optional(f"FunctionOptions.{attr}", getattr(self, attr), kind)
        if self.name is not None and not self.name.strip():
            raise _errors.ConfigError("FunctionOptions.name must not be empty")
        if self.retries is not None:
            checks.check_int(
                "FunctionOptions.retries", self.retries, minimum=0, maximum=_MAX_RETRIES
            )
        checks.check_key("FunctionOptions.idempotency", self.idempotency)
        if self.nondeterminism not in ("warn", "fail"):
            raise _errors.ConfigError(
                f"FunctionOptions.nondeterminism must be 'warn' or 'fail', "
                f"got {self.nondeterminism!r}"
            )
        if self.versioning not in (None, "pinned", "latest"):
            raise _errors.ConfigError(
                f"FunctionOptions.versioning must be 'pinned' or 'latest', got {self.versioning!r}"
            )
        sequences: tuple[tuple[str, type[_Option]], ...] = (
            ("concurrency", Concurrency),
            ("cancel", Cancel),
        )
        for attr, item_kind in sequences:
            items = _as_tuple(f"FunctionOptions.{attr}", getattr(self, attr), item_kind)
            object.__setattr__(self, attr, items)  # a list becomes the declared tuple
        self._check_combinations()

    def _check_combinations(self) -> None:
        # Each rule mirrors a check the engine makes at registration (pkg/inngest).
        if len(self.concurrency) > _MAX_CONCURRENCY:
            raise _errors.ConfigError(
                f"FunctionOptions.concurrency allows at most {_MAX_CONCURRENCY} limits, "
                f"got {len(self.concurrency)}"
            )
        if self.batch_events is not None and self.debounce is not None:
            raise _errors.ConfigError("FunctionOptions: batch_events cannot be used with debounce")
        if self.batch_events is not None and self.priority is not None:
            raise _errors.ConfigError("FunctionOptions: batch_events cannot be used with priority")
        if self.idempotency is not None and self.rate_limit is not None:
            raise _errors.ConfigError(
                "FunctionOptions: idempotency cannot be used with rate_limit (idempotency "
                "is a rate limit of 1 per 24h; set one or the other)"
            )

    @classmethod
    def build(
        cls,
        *,
        name: str | None = None,
        description: str | None = None,
        retries: int | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: Batch | None = None,
        priority: Priority | None = None,
        cancel: Cancel | Sequence[Cancel] | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        timeouts: Timeouts | None = None,
        nondeterminism: NondeterminismPolicy = "warn",
        versioning: VersioningPolicy | None = None,
    ) -> FunctionOptions:
        """Normalise user inputs and validate them together.

        ``concurrency`` may be an int (a plain function-wide limit), one
        :class:`Concurrency` or a list; ``cancel`` may be one :class:`Cancel` or a list.

        Raises:
            ConfigError: any option or combination of options is invalid.
        """
        limits: tuple[Concurrency, ...]
        if concurrency is None:
            limits = ()
        elif isinstance(concurrency, int) and not isinstance(concurrency, bool):
            limits = (Concurrency(limit=concurrency),)
        elif isinstance(concurrency, Concurrency):
            limits = (concurrency,)
        else:
            limits = _as_tuple("FunctionOptions.concurrency", concurrency, Concurrency)
        cancels = (cancel,) if isinstance(cancel, Cancel) else (cancel or ())
        return cls(
            name=name,
            description=description,
            retries=retries,
            concurrency=limits,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch_events=batch_events,
            priority=priority,
            cancel=_as_tuple("FunctionOptions.cancel", cancels, Cancel),
            idempotency=idempotency,
            singleton=singleton,
            timeouts=timeouts,
            nondeterminism=nondeterminism,
            versioning=versioning,
        )

    def to_wire(self) -> dict[str, Any]:
        """Function-level registration keys, only those that are set (PROTOCOL.md §2.3)."""
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.idempotency is not None:
            out["idempotency"] = self.idempotency
        if self.versioning is not None:
            out["versioning"] = self.versioning
        for key, items in (("concurrency", self.concurrency), ("cancel", self.cancel)):
            if items:
                out[key] = [item.to_wire() for item in items]
        for key, option in (
            ("throttle", self.throttle),
            ("rateLimit", self.rate_limit),
            ("debounce", self.debounce),
            ("batchEvents", self.batch_events),
            ("priority", self.priority),
            ("singleton", self.singleton),
            ("timeouts", self.timeouts),
        ):
            if option is not None:
                out[key] = option.to_wire()
        return out


def _as_tuple(where: str, items: object, kind: type[_T]) -> tuple[_T, ...]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise _errors.ConfigError(f"{where} must be a list of {kind.__name__}, got {items!r}")
    for item in items:
        checks.check_type(f"{where}[]", item, kind, f"a {kind.__name__}")
    return tuple(items)
