"""How strong the engine's keys must be: refused at start, not found out by an attacker.

A signing key signs every call to an app and every dashboard session; a dashboard key
signs people in. ``--signing-key signkey-prod-$KEY`` with ``$KEY`` unset gives a key
with no material at all, and a two-character key is guessed at once: either would let
anyone forge sessions and bearer tokens. So a signing key (and its fallback) needs at
least ``MIN_SIGNING_HEX`` hex characters after its ``signkey-<env>-`` prefix: 32 hex
characters are 128 bits, the usual floor for a symmetric key (Inngest's own keys have
64). A dashboard key is typed or pasted into a rate-limited form and may be any text:
at least ``MIN_DASHBOARD_CHARS`` characters. An event key must not be empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MIN_DASHBOARD_CHARS", "MIN_SIGNING_HEX", "problem"]

#: Hex characters a signing key needs after its prefix (128 bits).
MIN_SIGNING_HEX = 32
#: Characters a dashboard key needs.
MIN_DASHBOARD_CHARS = 16

_PREFIX = re.compile(r"^signkey-\w+-")
_HEX = re.compile(r"[0-9a-fA-F]*")
_MAKE_SIGNING = "python -c \"import secrets; print('signkey-prod-' + secrets.token_hex(32))\""
_MAKE_DASHBOARD = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'


def problem(
    signing_keys: Sequence[str], dashboard_keys: Sequence[str], event_keys: Sequence[str]
) -> str | None:
    """What is wrong with the configured keys, as a message saying what to do; or None.

    Args:
        signing_keys: the current signing key, then the fallback.
        dashboard_keys: keys the dashboard's sign-in accepts.
        event_keys: keys ``POST /e/{key}`` accepts.

    Returns:
        The first problem found, or None when every key is strong enough.
    """
    for index, key in enumerate(signing_keys):
        found = _signing_problem(key)
        if found is not None:
            name = "--signing-key-fallback" if index else "--signing-key"
            env = "STEPLINE_SIGNING_KEY_FALLBACK" if index else "STEPLINE_SIGNING_KEY"
            return f"the signing key ({name} / {env}) {found}"
    for key in dashboard_keys:
        if len(key.strip()) < MIN_DASHBOARD_CHARS:
            what = "is empty" if not key.strip() else f"has {len(key.strip())} characters"
            return (
                f"a dashboard key (STEPLINE_DASHBOARD_KEY) {what}; it needs at least "
                f"{MIN_DASHBOARD_CHARS}, or anyone could guess it: generate one with "
                f"{_MAKE_DASHBOARD}"
            )
    if any(not key.strip() for key in event_keys):
        return (
            "an event key (--event-key / STEPLINE_EVENT_KEY) is empty (an unset shell "
            "variable?); give the key your apps send events with"
        )
    return None


def _signing_problem(key: str) -> str | None:
    prefix = _PREFIX.match(key)
    material = key[prefix.end() :] if prefix else key
    shown = f"after its prefix {prefix.group()!r}" if prefix else ""
    if not material:
        return (
            f"has no key material {shown or 'at all'} (an unset shell variable?); it needs "
            f"at least {MIN_SIGNING_HEX} hex characters: generate one with {_MAKE_SIGNING}"
        )
    if len(material) % 2 or not _HEX.fullmatch(material):
        return (
            "must be hex, an even number of characters, optionally after a "
            f"signkey-<env>- prefix: generate one with {_MAKE_SIGNING}"
        )
    if len(material) < MIN_SIGNING_HEX:
        return (
            f"is too short: {len(material)} hex characters {shown or ''}, at least "
            f"{MIN_SIGNING_HEX} (128 bits) needed, or anyone could guess it and forge "
            f"sessions and tokens: generate one with {_MAKE_SIGNING}"
        ).replace("  ", " ")
    return None
