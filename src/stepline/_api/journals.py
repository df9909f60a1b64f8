"""A run's journal and a deploy check's report, through the engine's REST API, as flows.

``GET /v1/runs/{id}/export`` gives the journal (``_replay.journal``), with step outputs
dropped and keys masked on the engine's side, so what is left out never leaves it;
``POST /v1/deploy-checks`` hands the engine a check's report for its apps page.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from stepline import _settings
from stepline._api import runs as _runs
from stepline._replay.journal import Journal
from stepline._transport import effects

__all__ = ["export_flow", "upload_flow"]


def export_flow(
    settings: _settings.Settings,
    run_id: str,
    *,
    drop_outputs: Sequence[str] = (),
    redact_keys: Sequence[str] = (),
) -> effects.Flow[Journal]:
    """``GET /v1/runs/{id}/export``: the run's journal."""
    pairs = [*(("drop_output", n) for n in drop_outputs), *(("redact_key", k) for k in redact_keys)]
    query = f"?{urllib.parse.urlencode(pairs)}" if pairs else ""
    path = f"/v1/runs/{_runs.quote(run_id)}/export{query}"
    raw = yield from _runs.call(settings, "GET", path, what=run_id, whole=True)
    return Journal.from_json(raw)


def upload_flow(settings: _settings.Settings, report: object) -> effects.Flow[str]:
    """``POST /v1/deploy-checks``: store a check's report; returns its id."""
    raw = yield from _runs.call(settings, "POST", "/v1/deploy-checks", report, what="report")
    return str(raw["id"]) if isinstance(raw, dict) else ""
