"""A durable function: handler, id, triggers and options, validated at decoration time."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._context import Context, SyncContext
from stepline._options import FunctionOptions
from stepline._protocol import registration
from stepline._triggers import TriggerCron, TriggerEvent, triggers_to_wire

if TYPE_CHECKING:
    from stepline._client import Client

Trigger = TriggerEvent | TriggerCron
AsyncHandler = Callable[[Context], Awaitable[Any]]
SyncHandler = Callable[[SyncContext], Any]
Handler = AsyncHandler | SyncHandler

FAILURE_SUFFIX = "-failure"


class Function:
    """A function served by an app. Create it with ``@client.function(...)``.

    Attributes:
        id: the local id given to the decorator.
        app_id: the owning client's app id.
        composite_id: ``"{app_id}-{id}"``, the id the engine knows.
        name: display name.
        is_async: whether the handler is ``async def`` (it then gets a ``Context``).
        on_failure: the synthesized failure handler function, if any.
    """

    def __init__(
        self,
        *,
        client: Client,
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
        self.app_id = client.app_id
        self.composite_id = f"{client.app_id}-{local_id}"
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
                client=client,
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
