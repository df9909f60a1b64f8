"""The variables each option expression may use, checked when a function is declared.

An option object (``Concurrency(key=...)``) only checks its expression's syntax: it does
not know where it is used. The decorator knows, so it checks the variables here and the
error names the function. The allowed names mirror what the engine binds (and checks at
registration): ``event`` everywhere, plus ``async`` (the cancelling event) in ``Cancel.if_exp``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from stepline import _cel, _errors
from stepline._definition.options import FunctionOptions
from stepline._definition.triggers import TriggerCron, TriggerEvent

EVENT = ("event",)
EVENT_AND_ASYNC = ("event", "async")


def check_variables(
    options: FunctionOptions, triggers: Sequence[TriggerEvent | TriggerCron]
) -> None:
    """Refuse an expression using a variable the engine will not bind (``evnt.data.x``).

    Raises:
        ConfigError: naming the option, the unknown variable and the allowed ones.
    """
    for where, text, allowed in _expressions(options, triggers):
        if not text:
            continue
        try:
            _cel.check(text, allowed=allowed)
        except _cel.ExpressionError as exc:
            raise _errors.ConfigError(f"{where}: {exc}") from None


def _expressions(
    options: FunctionOptions, triggers: Sequence[TriggerEvent | TriggerCron]
) -> Iterator[tuple[str, str | None, tuple[str, ...]]]:
    for trigger in triggers:
        if isinstance(trigger, TriggerEvent):
            yield "TriggerEvent.expression", trigger.expression, EVENT
    for limit in options.concurrency:
        yield "Concurrency.key", limit.key, EVENT
    for rule, name in (
        (options.throttle, "Throttle"),
        (options.rate_limit, "RateLimit"),
        (options.debounce, "Debounce"),
        (options.singleton, "Singleton"),
    ):
        if rule is not None:
            yield f"{name}.key", rule.key, EVENT
    if options.batch_events is not None:
        yield "Batch.key", options.batch_events.key, EVENT
        yield "Batch.if_exp", options.batch_events.if_exp, EVENT
    if options.priority is not None:
        yield "Priority.run", options.priority.run, EVENT
    for cancel in options.cancel:
        yield "Cancel.if_exp", cancel.if_exp, EVENT_AND_ASYNC
    yield "FunctionOptions.idempotency", options.idempotency, EVENT
