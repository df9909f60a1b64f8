"""The client's methods for pausing and resuming functions (async, and ``*_sync`` twins)."""

from __future__ import annotations

from stepline import _settings, _transport


class PauseMixin:
    """Mixed into ``Client``: pausing and resuming functions."""

    settings: _settings.Settings
    _sync_transport: _transport.SyncTransport
    _async_transport: _transport.AsyncTransport
