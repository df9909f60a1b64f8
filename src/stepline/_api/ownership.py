"""Who started a run: principals, shared by the web kit, the client and the engine.

A *principal* is the app's own id for a caller (a user id, an account id, an API
client): a string the app chooses. The web kit learns it from ``authorize``, which may
return ``Principal(id)`` instead of ``True``::

    def authorize(access: AccessRequest) -> bool | Principal:
        user = current_user(access.request)
        if user is None:
            raise AccessDenied("log in first", status=401)
        return Principal(f"user:{user.id}")      # allowed, as this principal

A run started with a principal records it as its *starter* (``RunInfo.started_by``,
``started_by`` in the engine's REST view). From then on:

- an idempotency key is scoped to its principal: the same key from two principals
  starts two runs, and a principal only ever gets back its own run;
- the kit shows, cancels and streams a run with a starter only to that principal;
  anyone else gets the 404 an unknown run gets, byte for byte.

A run started without one (``allow_all``, a hook returning ``True``, ``client.start``
without ``started_by``) has no starter and is seen by every caller ``authorize``
lets through, as before principals existed.

A wrapper rather than a bare ``str``: a hook that returns some string by mistake
(``return user.role``) keeps refusing, as any answer but ``True`` always has.
Everything here is pure: no I/O, no framework.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from stepline import _errors

__all__ = [
    "MAX_PRINCIPAL",
    "Principal",
    "Verdict",
    "principal_problem",
    "start_event_id",
    "verdict",
    "visible",
]

#: The longest principal (characters); the engine refuses longer ones.
MAX_PRINCIPAL = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: return ``Principal(id)`` from ``authorize`` to allow, as them.

    Runs the caller starts are then theirs (see the module's notes).

    Attributes:
        id: your id for the caller (1-256 characters), e.g. ``f"user:{user.id}"``.

    Raises:
        ConfigError: ``id`` is not a string the engine can store.
    """

    id: str

    def __post_init__(self) -> None:
        text: object = self.id  # checked at run time too: ids are often ints
        problem = principal_problem(text) if isinstance(text, str) else "want a str"
        if problem is not None:
            raise _errors.ConfigError(f"Principal({self.id!r:.80}): {problem}")


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What an ``authorize`` hook's answer means.

    Attributes:
        allowed: the request may go on.
        principal: who is calling, when the hook said so (None: nobody in particular).
    """

    allowed: bool
    principal: str | None = None


def verdict(answer: object) -> Verdict:
    """Read a hook's answer: ``True`` or a ``Principal`` allows; anything else refuses."""
    if answer is True:
        return Verdict(True)
    if isinstance(answer, Principal):
        return Verdict(True, answer.id)
    return Verdict(False)


def principal_problem(principal: str) -> str | None:
    """Why ``principal`` cannot be a run's starter, or None when it can."""
    if not 0 < len(principal) <= MAX_PRINCIPAL:
        return f"want a string of 1-{MAX_PRINCIPAL} characters"
    if any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in principal):
        return "NUL characters and lone surrogates cannot be stored"
    return None


def visible(started_by: str | None, principal: str | None) -> bool:
    """Whether a caller acting as ``principal`` may see a run started by ``started_by``."""
    return started_by is None or started_by == principal


def start_event_id(idempotency_key: str | None, started_by: str | None) -> str | None:
    """The event id that makes a start idempotent: its key, scoped to its principal.

    Unscoped keys keep their historical ``start:{key}``. A scoped one is a digest under
    a prefix no unscoped key can produce, so no key, however chosen, reaches another
    principal's run.
    """
    if idempotency_key is None:
        return None
    if started_by is None:
        return f"start:{idempotency_key}"
    scoped = json.dumps([started_by, idempotency_key], ensure_ascii=True)
    return f"start-by:{hashlib.sha256(scoped.encode()).hexdigest()}"
