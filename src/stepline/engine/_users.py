"""Who may sign in to the dashboard: named keys, each with a role.

A dashboard user is a name, a role (``stepline._serving.access.Role``) and the key they
type on the sign-in page. They come from ``STEPLINE_DASHBOARD_KEYS`` (comma-separated
``name:role:key``) and from the file ``STEPLINE_DASHBOARD_KEYS_FILE`` names (one
``name:role:key`` a line; blank lines and ``#`` comments skipped), so the keys need not sit
in the environment. Two names are the engine's own and no user may take them: whoever
signs in with the signing key is ``signing-key`` and with an unnamed
``STEPLINE_DASHBOARD_KEY`` is ``dashboard``, both ``admin``.

Pure parsing: the caller reads the file (``_config.resolve``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from stepline._serving.access import Role

__all__ = ["RESERVED", "SHARED_KEY_NAME", "SIGNING_KEY_NAME", "DashboardUser", "parse", "problem"]

#: The name of whoever signs in with the signing key (``admin``).
SIGNING_KEY_NAME = "signing-key"
#: The name of whoever signs in with an unnamed ``STEPLINE_DASHBOARD_KEY`` (``admin``).
SHARED_KEY_NAME = "dashboard"
#: Names a configured user may not take.
RESERVED = frozenset({SIGNING_KEY_NAME, SHARED_KEY_NAME, "dev", "anonymous"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_ROLES = {role.value: role for role in Role}


@dataclasses.dataclass(frozen=True, slots=True)
class DashboardUser:
    """A named key the dashboard's sign-in accepts, and the role it gives.

    Attributes:
        name: shown on the dashboard and in the audit log (letters, digits, ``._@+-``).
        role: what the user may do.
        key: what the user types to sign in (at least 16 characters).
    """

    name: str
    role: Role
    key: str = dataclasses.field(repr=False)


def parse(entries: Iterable[str], where: str) -> tuple[DashboardUser, ...]:
    """Users from ``name:role:key`` entries (blank ones and ``#`` comments skipped).

    Args:
        entries: the entries: the setting split at commas, or a file's lines.
        where: the setting or file they came from, for the error message.

    Raises:
        ValueError: an entry is not ``name:role:key`` with a known role.
    """
    found: list[DashboardUser] = []
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, _, rest = entry.partition(":")
        role_text, sep, key = rest.partition(":")
        role = _ROLES.get(role_text.strip().lower())
        if not sep or role is None:
            roles = ", ".join(_ROLES)
            raise ValueError(
                f"{where}, entry {number}: want name:role:key with a role of {roles} "
                f"(got {name.strip()!r} and role {role_text.strip()!r})"
            )
        found.append(DashboardUser(name.strip(), role, key.strip()))
    return tuple(found)


def problem(users: Iterable[DashboardUser]) -> str | None:
    """What is wrong with the users' names (their keys' strength is ``_keys``'s), or None."""
    seen: set[str] = set()
    keys: set[str] = set()
    for user in users:
        if not _NAME.fullmatch(user.name):
            return (
                f"a dashboard user's name {user.name!r} must be 1-64 letters, digits or "
                "._@+- (STEPLINE_DASHBOARD_KEYS)"
            )
        if user.name in RESERVED:
            return f"the dashboard user name {user.name!r} is the engine's own: choose another"
        if user.name in seen:
            return f"two dashboard users are named {user.name!r}"
        if user.key in keys:
            return f"the dashboard user {user.name!r} has another user's key"
        seen.add(user.name)
        keys.add(user.key)
    return None
