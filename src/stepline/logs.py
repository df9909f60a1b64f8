"""Structured logs for Stepline apps and engines.

``configure(json_lines=True)`` writes one JSON object per record; every record made
while a function runs (any logger, not only ``ctx.logger``) carries ``run_id``,
``function_id``, ``step_id`` and ``attempt``. To keep your own handlers, add
``RunContextFilter()`` to them and, for JSON, set ``JsonFormatter()`` as their formatter.
"""

from __future__ import annotations

from stepline._logs import FIELDS, JsonFormatter, RunContextFilter, configure

__all__ = ["FIELDS", "JsonFormatter", "RunContextFilter", "configure"]
