"""Searchable run attributes: setting them on a run, as a flow.

An attribute is a name (1-64 letters, digits or ``_ . : -``) and a value (a string,
number or boolean, kept as a string). Set them at start (``client.start(...,
attributes=)``), from inside the run (``ctx.set_attributes``) or from anywhere
(``client.get_run(run_id).set_attributes``); find runs by them with
``client.list_runs(attributes=)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from stepline import _settings
from stepline._api import runs as _runs
from stepline._transport import effects

__all__ = ["AttributeValue", "set_flow"]

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
