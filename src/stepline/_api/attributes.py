"""The client's methods for searchable run attributes (async, and ``*_sync`` twins).

An attribute is a name (1-64 letters, digits or ``_ . : -``) and a value (a string,
number or boolean, kept as a string). Set them at start (``client.start(...,
attributes=)``), from inside the run (``ctx.set_attributes``) or from anywhere
(``client.set_attributes``); find runs by them with ``client.list_runs(attributes=)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from stepline import _settings
from stepline._api import runs as _runs
from stepline._transport import effects, performers

__all__ = ["AttributeValue", "AttributesMixin", "set_flow"]

AttributeValue = str | int | float | bool


def set_flow(
    settings: _settings.Settings, run_id: str, attributes: Mapping[str, AttributeValue]
) -> effects.Flow[dict[str, str]]:
    """``POST /v1/runs/{id}/attributes``; returns every attribute the run now has."""
    path = f"/v1/runs/{run_id}/attributes"
    raw = yield from _runs.call(
        settings, "POST", path, {"attributes": dict(attributes)}, what=run_id
    )
    found = raw.get("attributes") if isinstance(raw, dict) else None
    return {str(k): str(v) for k, v in (found or {}).items()}


class AttributesMixin:
    """Mixed into ``Client``: searchable run attributes."""

    settings: _settings.Settings
    _sync_transport: performers.SyncTransport
    _async_transport: performers.AsyncTransport

    async def set_attributes(
        self, run_id: str, attributes: Mapping[str, AttributeValue]
    ) -> dict[str, str]:
        """Set (or replace) attributes on a run, live or ended; returns all it has now.

        Raises:
            RunNotFoundError: no such run.
            ManagementError: a bad name or value (the message names it), more than 32
                attributes, or the engine is unreachable.
        """
        flow = set_flow(self.settings, run_id, attributes)
        return await effects.drive_async(flow, self._async_transport.perform)

    def set_attributes_sync(
        self, run_id: str, attributes: Mapping[str, AttributeValue]
    ) -> dict[str, str]:
        """Blocking twin of ``set_attributes``."""
        return effects.drive_sync(
            set_flow(self.settings, run_id, attributes), self._sync_transport.perform
        )
