"""The serve endpoint (the route the engine calls, ``/api/inngest``) and its signer.

``CommHandler`` builds one ``ServeEndpoint`` and one ``Signer`` at construction; app sync
(``_comm.app_sync``) reads only these two, never the handler itself. A durable endpoint,
a route of the app's own that runs as a function, is another thing:
``stepline._endpoints.endpoint.Endpoint``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from stepline import _errors
from stepline._comm.messages import CommRequest, CommResponse
from stepline._protocol import headers, signing
from stepline._settings import Settings

if TYPE_CHECKING:
    from stepline._definition.function import Function


@dataclasses.dataclass(frozen=True, slots=True)
class ServeEndpoint:
    """One app's serve endpoint, as the engine sees it.

    Attributes:
        settings: the app's resolved settings.
        framework: the framework name sent as ``X-Inngest-Framework``.
        serve_origin: the configured public origin, if any.
        serve_path: the configured public path, if any.
        base_headers: the headers every response carries.
        functions: the served functions (failure handlers included) by composite id.
    """

    settings: Settings
    framework: str
    serve_origin: str | None
    serve_path: str | None
    base_headers: dict[str, str]
    functions: Mapping[str, Function]


@dataclasses.dataclass(frozen=True, slots=True)
class Signer:
    """Checks the engine's request signatures and signs the answers.

    Args:
        settings: the app's settings (mode and signing keys).
        wall_clock: seconds since the epoch (the signatures' freshness window).
    """

    settings: Settings
    wall_clock: Callable[[], float]

    def verify(self, request: CommRequest) -> str | None:
        """Check the request signature; returns the key that validated, if any.

        Cloud mode requires a valid signature; dev mode checks one only when it is
        present and a key is configured.
        """
        settings = self.settings
        header = request.headers.get(headers.SIGNATURE)
        if settings.is_dev and (header is None or not settings.signing_keys):
            return None
        if not settings.signing_keys:
            raise _errors.SigningKeyMissingError(
                "cloud mode needs a signing key: set STEPLINE_SIGNING_KEY or pass "
                "signing_key=, or use dev mode (STEPLINE_DEV=1)"
            )
        return signing.verify(request.body, header, settings.signing_keys, now=self.wall_clock())

    def signed(self, response: CommResponse, key: str | None) -> CommResponse:
        """Sign the response body with the key that validated the request."""
        if key is not None:
            response.headers[headers.SIGNATURE] = signing.sign(
                response.body, key, now=self.wall_clock()
            )
        return response
