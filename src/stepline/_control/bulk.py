"""The client's methods for bulk cancel and replay over a filter, and replaying a run
from a step (async, and ``*_sync`` twins)."""

from __future__ import annotations

from stepline import _settings, _transport


class BulkMixin:
    """Mixed into ``Client``: bulk cancel and replay, and replaying a run from a step."""

    settings: _settings.Settings
    _sync_transport: _transport.SyncTransport
    _async_transport: _transport.AsyncTransport
