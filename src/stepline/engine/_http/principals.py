"""Who a request acts as: a name and a role, from the credential it was let in with.

- Dev mode has no credentials: everyone is ``dev``, an ``admin``.
- The signing key is ``admin``, named ``signing-key``. A caller holding it may say on
  whose behalf it acts with ``X-Stepline-Actor: <name>`` (the Django admin sends its
  user's name): the name is recorded, the role stays the key's. No other credential may
  assert a name: a session's header is ignored, since a session is one person already.
- A dashboard session is the name it was signed in as, with that user's role now
  (``auth.role_of``).
- An event key, a hook token, a Connect token and no credential at all carry no role:
  their routes check what they present, not who.

``check`` turns a role below a route's into the 403 naming both.
"""

from __future__ import annotations

import dataclasses
import time

import starlette.requests

from stepline._serving.access import Credential, Role, Route
from stepline.engine import _users
from stepline.engine._config import EngineSettings
from stepline.engine._http import auth
from stepline.engine._http.wire import ApiError

Request = starlette.requests.Request

__all__ = ["ACTOR_HEADER", "Principal", "check", "of", "principal", "require"]

#: The header a signing-key caller names the person it acts for with.
ACTOR_HEADER = "x-stepline-actor"
_MAX_ACTOR = 128


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as.

    Attributes:
        name: shown in the audit log and on the dashboard.
        role: what it may do; None for a credential that names no one (an event key).
        credential: the kind it was let in with.
        via: for a name asserted with ``X-Stepline-Actor``, the credential's own name
            (``signing-key``); None otherwise.
    """

    name: str
    role: Role | None
    credential: Credential
    via: str | None = None


def of(request: Request, credential: Credential, settings: EngineSettings) -> Principal:
    """The principal of a request ``gate`` let in with ``credential``."""
    if settings.mode != "start":
        actor = _actor(request)
        return Principal(actor or "dev", Role.ADMIN, credential, "dev" if actor else None)
    if credential is Credential.SIGNING_KEY:
        actor = _actor(request)
        if actor is not None:
            return Principal(actor, Role.ADMIN, credential, _users.SIGNING_KEY_NAME)
        return Principal(_users.SIGNING_KEY_NAME, Role.ADMIN, credential)
    if credential is Credential.SESSION:
        name = session_name(request, settings)
        if name is not None:
            return Principal(name, auth.role_of(name, settings), credential)
    return Principal("anonymous", None, credential)


def session_name(request: Request, settings: EngineSettings) -> str | None:
    """The name a request's session cookie signed in, if the cookie is valid."""
    token = request.cookies.get(auth.COOKIE)
    return auth.session_user(token, settings, now=time.time())


def _actor(request: Request) -> str | None:
    """``X-Stepline-Actor``, when it is a name worth recording (printable, short)."""
    raw = request.headers.get(ACTOR_HEADER, "").strip()
    if not raw or len(raw) > _MAX_ACTOR or not raw.isprintable():
        return None
    return raw


def check(row: Route, who: Principal) -> None:
    """Refuse ``who`` when its role is below ``row``'s.

    Raises:
        ApiError: 403 naming the role the route needs and the caller's.
    """
    if who.role is not None and not who.role.allows(row.role):
        raise _refused(row.role, who, f"{row.method} {row.path}")


def require(request: Request, needed: Role, what: str) -> None:
    """Refuse a request whose principal's role is below ``needed`` for ``what`` (a part of a
    route a lesser role may use otherwise, such as a search over payloads).

    Raises:
        ApiError: 403 naming the role ``what`` needs and the caller's.
    """
    who = principal(request)
    if who.role is not None and not who.role.allows(needed):
        raise _refused(needed, who, what)


def principal(request: Request) -> Principal:
    """The principal ``gate`` found for ``request`` (anonymous if it went through none)."""
    found = getattr(request.state, "principal", None)
    if isinstance(found, Principal):
        return found
    return Principal("anonymous", None, Credential.NONE)


def _refused(needed: Role, who: Principal, what: str) -> ApiError:
    role = who.role.value if who.role is not None else "none"
    message = (
        f"{what} needs the {needed.value} role; {who.name} has the {role} role "
        "(roles: viewer < operator < admin)"
    )
    return ApiError(403, message, {"error": message, "needed": needed.value, "role": role})
