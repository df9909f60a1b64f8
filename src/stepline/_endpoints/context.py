"""The context a durable endpoint's handler gets: a function's context plus the request."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from stepline._context import Context, SyncContext
from stepline._endpoints.request import EndpointRequest

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
        """Who the endpoint's ``authorize`` said is calling (None: nobody in particular)."""
        return self.request.principal


@dataclasses.dataclass(frozen=True, slots=True)
class SyncEndpointContext(SyncContext):
    """Passed to plain ``def`` durable endpoints; like ``EndpointContext``."""

    request: EndpointRequest

    @property
    def principal(self) -> str | None:
        """Who the endpoint's ``authorize`` said is calling (None: nobody in particular)."""
        return self.request.principal


def endpoint_context(ctx: Context | SyncContext) -> EndpointContext | SyncEndpointContext:
    """The endpoint context for a function context whose trigger data is a request."""
    fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}
    data = ctx.event.data
    request = EndpointRequest.from_data(data if isinstance(data, Mapping) else {})
    if isinstance(ctx, Context):
        return EndpointContext(**fields, request=request)
    return SyncEndpointContext(**fields, request=request)
