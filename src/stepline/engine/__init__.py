"""The Stepline engine: events, scheduling and execution on SQLite (``stepline dev``).

Embed it (``async with Engine(...)``), or run it with ``stepline dev`` / ``stepline start``.
"""

from __future__ import annotations

from stepline._status import RunStatus as RunStatus
from stepline.engine._apps.sync import SyncResult as SyncResult
from stepline.engine._clock import Clock as Clock
from stepline.engine._clock import ManualClock as ManualClock
from stepline.engine._clock import SystemClock as SystemClock
from stepline.engine._config import EngineConfigError as EngineConfigError
from stepline.engine._config import EngineSettings as EngineSettings
from stepline.engine._config import resolve as resolve
from stepline.engine._engine import Engine as Engine
from stepline.engine._errors import NotFoundError as NotFoundError
from stepline.engine._model import StepStatus as StepStatus
from stepline.engine._store.schema_version import SchemaTooNewError as SchemaTooNewError

__all__ = [
    "Clock",
    "Engine",
    "EngineConfigError",
    "EngineSettings",
    "ManualClock",
    "NotFoundError",
    "RunStatus",
    "SchemaTooNewError",
    "StepStatus",
    "SyncResult",
    "SystemClock",
    "resolve",
]
