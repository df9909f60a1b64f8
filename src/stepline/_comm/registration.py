"""Former name of ``_comm.app_sync``, kept for the callers outside the SDK.

The engine's ``serve`` and some tests build a registration body from a whole handler;
new code calls ``app_sync.register_payload(handler.endpoint, url)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepline._comm import app_sync

if TYPE_CHECKING:
    from stepline._comm.handler import CommHandler

__all__ = ["register_payload"]


def register_payload(handler: CommHandler, url: str) -> dict[str, Any]:
    """The ``POST /fn/register`` body for ``handler``'s functions served at ``url``."""
    return app_sync.register_payload(handler.endpoint, url)
