"""The check ``stepline._serving.access.ENGINE`` puts in front of every handler.

``guarded`` wraps a handler with the check for exactly the credential kinds its row
accepts; ``api`` wraps every HTTP handler it serves this way, and the gateway's socket
takes the Connect token its handshake checks. The credential a request was let in with
is on ``request.state.credential``: a handler that treats kinds differently (a
dashboard session's app sync) reads it there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline._serving.access import Credential, Route
from stepline.engine._config import EngineSettings
from stepline.engine._http import auth, dashboard
from stepline.engine._http.wire import ApiError

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: The order kinds are tried in: the signing key before a session, so a request that
#: carries both acts with the key's rights.
_ORDER = (
    Credential.NONE,
    Credential.SIGNING_KEY,
    Credential.EVENT_KEY,
    Credential.SESSION,
    Credential.HOOK_TOKEN,
    Credential.CONNECT_TOKEN,
)


def presented(
    request: Request, accepts: frozenset[Credential], settings: EngineSettings
) -> Credential | None:
    """The first of ``accepts`` the request presents, or None.

    Args:
        request: the request.
        accepts: the kinds its route's row lists.
        settings: the engine's settings (mode and keys).

    Returns:
        The credential kind that lets the request in; a capability kind (hook or Connect
        token) is let through here for its handler to verify.
    """
    for kind in _ORDER:
        if kind in accepts and _shows(kind, request, settings):
            return kind
    return None


def _shows(kind: Credential, request: Request, settings: EngineSettings) -> bool:
    if kind is Credential.SIGNING_KEY:
        return auth.bearer_ok(request.headers.get("authorization"), settings)
    if kind is Credential.EVENT_KEY:
        return auth.event_key_ok(str(request.path_params.get("key", "")), settings)
    if kind is Credential.SESSION:
        return dashboard.signed_in(request, settings)
    # NONE, and the capabilities their handlers verify
    return kind is Credential.NONE or kind.capability


def refusal(accepts: frozenset[Credential]) -> ApiError:
    """The 401 for a request that presents none of ``accepts``."""
    if Credential.EVENT_KEY in accepts:
        message = "event key not found"
        return ApiError(401, message, {"ids": [], "status": 401, "error": message})
    if Credential.SESSION in accepts:
        return ApiError(
            401,
            "missing or invalid Authorization: Bearer <signing key> (or a dashboard session)",
        )
    return ApiError(
        401,
        "missing or invalid Authorization: Bearer <signing key> (this route is for SDKs "
        "and workers: a dashboard session does not reach it)",
    )


def guarded(row: Route, handler: Handler, settings: EngineSettings) -> Handler:
    """``handler`` behind the check for exactly the kinds ``row`` accepts.

    Raises (from the returned handler):
        ApiError: 401 when the request presents none of them.
    """
    accepts = row.accepts

    async def checked(request: Request) -> Response:
        credential = presented(request, accepts, settings)
        if credential is None:
            raise refusal(accepts)
        request.state.credential = credential
        return await handler(request)

    return checked


def credential(request: Request) -> Credential:
    """The kind ``guarded`` let ``request`` in with (NONE if it went through no check)."""
    found = getattr(request.state, "credential", None)
    return found if isinstance(found, Credential) else Credential.NONE


__all__ = ["credential", "guarded", "presented", "refusal"]
