"""The client's methods for searchable run attributes (async, and ``*_sync`` twins)."""

from __future__ import annotations

from stepline import _settings, _transport


class AttributesMixin:
    """Mixed into ``Client``: searchable run attributes."""

    settings: _settings.Settings
    _sync_transport: _transport.SyncTransport
    _async_transport: _transport.AsyncTransport
