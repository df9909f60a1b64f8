"""The check ``stepline._serving.access.ENGINE`` puts in front of every handler.

``guarded`` wraps a handler with the check for exactly the credential kinds its row
accepts; ``api`` wraps every HTTP handler it serves this way, and the gateway's socket
takes the Connect token its handshake checks. The credential a request was let in with
is on ``request.state.credential``: a handler that treats kinds differently (a
dashboard session's app sync) reads it there.

Then the role: the principal the credential names (``principals``, on
``request.state.principal``) must hold the row's role, else 403; a viewer's answer on a
route that carries payloads is redacted (``redaction``), or refused when it is not JSON
(a stream). The audit log (``audit``) hears how every request ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline import _json
from stepline._serving.access import Credential, Role, Route
from stepline.engine._config import EngineSettings
from stepline.engine._errors import NotFoundError
from stepline.engine._http import auth, dashboard, principals, redaction
from stepline.engine._http.audit import Auditor
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


def guarded(
    row: Route, handler: Handler, settings: EngineSettings, auditor: Auditor | None = None
) -> Handler:
    """``handler`` behind the check for exactly the kinds ``row`` accepts, and its role.

    Args:
        row: the route's row.
        handler: what serves it.
        settings: the engine's settings (mode and keys).
        auditor: records what ``audit.audited`` says to; None records nothing.

    Raises (from the returned handler):
        ApiError: 401 when the request presents none of them; 403 when its principal's
            role is below the row's.
    """
    accepts = row.accepts

    async def checked(request: Request) -> Response:
        credential = presented(request, accepts, settings)
        if credential is None:
            raise refusal(accepts)
        request.state.credential = credential
        who = principals.of(request, credential, settings)
        request.state.principal = who
        try:
            principals.check(row, who)
            response = await handler(request)
            if row.payloads and who.role is Role.VIEWER:
                response = _redacted(row, response)
        except Exception as exc:
            if auditor is not None:
                status = _status(exc)
                await auditor.action(row, request, who, status, refused=status == 403)
            raise
        if auditor is not None:
            await auditor.action(row, request, who, response.status_code, refused=False)
        return response

    return checked


def _redacted(row: Route, response: Response) -> Response:
    """A viewer's answer: a JSON answer's payloads replaced; anything else refused.

    Raises:
        ApiError: 403 for an answer that is not JSON (a stream cannot be redacted).
    """
    body = getattr(response, "body", None)
    kind = response.headers.get("content-type", "")
    if not isinstance(body, bytes) or not kind.startswith("application/json"):
        raise ApiError(
            403,
            f"{row.method} {row.path} answers with payloads the viewer role may not read "
            "and cannot be redacted; it needs the operator role",
        )
    if not 200 <= response.status_code < 300:
        return response  # an error the engine wrote: no payload
    shown = _json.dumpb(redaction.redact(_json.loads(body)))
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(shown, response.status_code, headers=headers, media_type="application/json")


def _status(exc: Exception) -> int:
    """The status an exception a handler raised is answered with (``answers.failure``)."""
    if isinstance(exc, ApiError):
        return exc.status
    return 404 if isinstance(exc, NotFoundError) else 500


def credential(request: Request) -> Credential:
    """The kind ``guarded`` let ``request`` in with (NONE if it went through no check)."""
    found = getattr(request.state, "credential", None)
    return found if isinstance(found, Credential) else Credential.NONE


__all__ = ["credential", "guarded", "presented", "refusal"]
