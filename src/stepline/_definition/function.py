"""A durable function: handler, id, triggers and options, validated at decoration time."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypedDict

from typing_extensions import Unpack

from stepline import _errors
from stepline._definition import expressions
from stepline._definition.options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    FunctionOptions,
    NondeterminismPolicy,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    VersioningPolicy,
)
from stepline._definition.triggers import TriggerCron, TriggerEvent, triggers_to_wire
from stepline._execution.context import Context, SyncContext
from stepline._protocol import event_names, registration

Trigger = TriggerEvent | TriggerCron
AsyncHandler = Callable[[Context], Awaitable[Any]]
SyncHandler = Callable[[SyncContext], Any]
Handler = AsyncHandler | SyncHandler

FAILURE_SUFFIX = "-failure"


class FunctionOptionArgs(TypedDict, total=False):
    """The options ``client.function(...)`` takes as keywords: ``FunctionOptions.build``'s."""

    name: str | None
    description: str | None
    retries: int | None
    concurrency: int | Concurrency | Sequence[Concurrency] | None
    throttle: Throttle | None
    rate_limit: RateLimit | None
    debounce: Debounce | None
    batch_events: Batch | None
    priority: Priority | None
    cancel: Cancel | Sequence[Cancel] | None
    idempotency: str | None
    singleton: Singleton | None
    timeouts: Timeouts | None
    nondeterminism: NondeterminismPolicy
    versioning: VersioningPolicy | None


def declare(
    app_id: str,
    *,
    id: str,
    trigger: Trigger | None = None,
    triggers: Sequence[Trigger] | None = None,
    on_failure: Handler | None = None,
    **options: Unpack[FunctionOptionArgs],
) -> Callable[[Handler], Function]:
    """The decorator of ``client.function``, for the app ``app_id`` (no client needed).

    Invalid options raise ``ConfigError`` here, before any handler is given; every
    message starts with ``function "<id>": ``.
    """
    try:
        if (trigger is None) == (triggers is None):
            raise _errors.ConfigError("give exactly one of trigger= or triggers=")
        all_triggers = [trigger] if trigger is not None else list(triggers or [])
        built = FunctionOptions.build(**options)
        expressions.check_variables(built, all_triggers)
    except _errors.ConfigError as exc:
        raise _named(exc, id) from None

    def decorate(handler: Handler) -> Function:
        try:
            return Function(
                app_id=app_id,
                local_id=id,
                handler=handler,
                triggers=all_triggers,
                options=built,
                on_failure=on_failure,
            )
        except _errors.ConfigError as exc:
            raise _named(exc, id) from None

    return decorate


def _named(exc: _errors.ConfigError, function_id: object) -> _errors.ConfigError:
    """The same error, its message naming the function (once) for the decorator's caller."""
    if not isinstance(function_id, str) or not function_id.strip():
        return exc  # no id to name: the error is about the id itself
    prefix = f'function "{function_id}"'
    if prefix in exc.message:
        return exc
    return type(exc)(f"{prefix}: {exc.message}")


class Function:
    """A function served by an app. Create it with ``@client.function(...)``.

    A function belongs to an app id, not to a client: any client of that app serves it.

    Attributes:
        id: the local id given to the decorator.
        app_id: the owning app's id.
        composite_id: ``"{app_id}-{id}"``, the id the engine knows.
        name: display name.
        is_async: whether the handler is ``async def`` (it then gets a ``Context``).
        on_failure: the synthesized failure handler function, if any.
    """

    def __init__(
        self,
        *,
        app_id: str,
        local_id: str,
        handler: Handler,
        triggers: list[Trigger],
        options: FunctionOptions,
        on_failure: Handler | None = None,
        failure_of: Function | None = None,
    ) -> None:
        if not isinstance(local_id, str) or not local_id.strip():
            raise _errors.ConfigError("function id must be a non-empty string")
        _check_handler(handler, f'function "{local_id}"')
        self.id = local_id
        self.app_id = app_id
        self.composite_id = f"{app_id}-{local_id}"
        self.name = options.name or local_id
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.options = options
        self.failure_of = failure_of
        self._triggers_wire = triggers_to_wire(triggers) if failure_of is None else []
        self.on_failure: Function | None = None
        if on_failure is not None:
            _check_handler(on_failure, f'on_failure of function "{local_id}"')
            self.on_failure = Function(
                app_id=app_id,
                local_id=local_id + FAILURE_SUFFIX,
                handler=on_failure,
                triggers=[],
                options=FunctionOptions.build(name=f"{self.name} (failure)"),
                failure_of=self,
            )
        self.__doc__ = handler.__doc__
        self.__wrapped__ = handler

    def __repr__(self) -> str:
        return f"<stepline.Function {self.composite_id!r}>"

    @property
    def is_endpoint(self) -> bool:
        """A durable endpoint's function: only its endpoint's web route starts it."""
        return event_names.is_endpoint(str(t.get("event", "")) for t in self._triggers_wire)

    def configs(self, serve_url: str) -> list[dict[str, Any]]:
        """The registration configs of this function and its failure handler."""
        if self.failure_of is not None:
            parent = self.failure_of
            return [
                registration.on_failure_config(
                    composite_id=parent.composite_id, name=parent.name, serve_url=serve_url
                )
            ]
        own = registration.function_config(
            composite_id=self.composite_id,
            name=self.name,
            serve_url=serve_url,
            triggers=self._triggers_wire,
            options=self.options.to_wire(),
            retries=self.options.retries,
        )
        return [own, *(self.on_failure.configs(serve_url) if self.on_failure else [])]

    def all(self) -> list[Function]:
        """This function and its failure handler, as the handler routes them."""
        return [self, *([self.on_failure] if self.on_failure else [])]


def _check_handler(handler: object, where: str) -> None:
    if not callable(handler):
        raise _errors.ConfigError(f"{where}: handler must be callable, got {handler!r}")
    try:
        params = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return  # builtins without signatures: trust the caller
    if len(params) != 1:
        raise _errors.ConfigError(
            f"{where}: handler must take exactly one argument (ctx), "
            f"got {len(params)}: {[p.name for p in params]}"
        )
