"""The Tornado conventions: the ``Application.settings`` keys and ``ClientMixin`` reading them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tornado.web

from stepline import _errors

if TYPE_CHECKING:
    from stepline._client import Client

__all__ = ["CLIENT_SETTING", "ENGINE_SETTING", "SERVED", "ClientMixin"]

#: ``Application.settings`` keys ``serve`` fills: the shared client and the embedded engine.
CLIENT_SETTING = "stepline_client"
ENGINE_SETTING = "stepline_engine"
SERVED = "stepline_served"  # what ``shutdown`` closes


class ClientMixin:
    """Mix into a ``RequestHandler``: ``self.stepline_client`` is the app's shared client."""

    application: tornado.web.Application

    @property
    def stepline_client(self) -> Client:
        """``self.application.settings["stepline_client"]``, as ``serve`` left it."""
        client: Client | None = self.application.settings.get(CLIENT_SETTING)
        if client is None:
            raise _errors.ConfigError(
                f"no {CLIENT_SETTING!r} in the Application settings: call "
                "stepline.tornado.serve(app, client, functions) or pass stepline_client="
            )
        return client
