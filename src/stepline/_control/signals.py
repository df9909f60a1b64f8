"""The client's methods for signals to a waiting run (async, and ``*_sync`` twins)."""

from __future__ import annotations

from stepline import _settings, _transport


class SignalsMixin:
    """Mixed into ``Client``: signals to a waiting run."""

    settings: _settings.Settings
    _sync_transport: _transport.SyncTransport
    _async_transport: _transport.AsyncTransport
