"""The context a durable endpoint's handler gets: a function's context plus the request."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from stepline._endpoints.request import EndpointRequest
from stepline._execution.context import Context, SyncContext, call_state

__all__ = ["EndpointContext", "SyncEndpointContext"]


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointContext(Context):
    """Passed to ``async def`` durable endpoints: a ``Context`` plus the web request.

    Attributes:
        request: the request the run was started for (the same on every resumption).
    """

    request: EndpointRequest

    @property
    def principal(self) -> str | None:
        """Who the endpoint said is calling when it started the run (None: nobody in particular).

        The principal the engine recorded as the run's starter: the same on every resumption.
        """
        return self.request.principal


@dataclasses.dataclass(frozen=True, slots=True)
class SyncEndpointContext(SyncContext):
    """Passed to plain ``def`` durable endpoints; like ``EndpointContext``."""

    request: EndpointRequest

    @property
    def principal(self) -> str | None:
        """Who the endpoint said is calling; see ``EndpointContext.principal``."""
        return self.request.principal


def endpoint_context(ctx: Context | SyncContext) -> EndpointContext | SyncEndpointContext:
    """The endpoint context for a function context whose trigger data is a request.

    The caller (``principal``) is the run's starter as the engine recorded it when the
    endpoint started the run, sent by the engine with every call of an endpoint's run
    (``CallContext.started_by``): never read from the trigger data.
    """
    fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}
    data = ctx.event.data
    started_by = call_state(ctx).request.ctx.started_by
    request = EndpointRequest.from_data(
        data if isinstance(data, Mapping) else {}, principal=started_by
    )
    if isinstance(ctx, Context):
        return EndpointContext(**fields, request=request)
    return SyncEndpointContext(**fields, request=request)
