"""Database URLs without their secrets, for the banner, errors and logs.

libpq takes a password in three places, and each must be hidden wherever the URL is
shown: the URL's user info (``postgresql://user:pw@host/db``), its query
(``?password=pw``, ``&sslpassword=pw``), and a keyword/value string
(``host=db password=pw`` or ``password='p w'``). Pure functions, no parsing by libpq:
a malformed value is redacted as well as the parser can tell.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact", "scrub"]

#: libpq parameters that hold a secret (the others name files or settings).
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
_MASK = "***"
_KEYWORD = re.compile(
    r"(?P<name>\b(?:" + "|".join(sorted(SECRET_PARAMETERS)) + r"))(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*(?:'|$)|[^\s']*)",
    re.IGNORECASE,
)
#: The shortest secret also hidden in free text (error messages): shorter ones would
#: mask ordinary words and are guessed at once anyway.
_MIN_SCRUBBED = 4


def redact(dsn: str) -> str:
    """``dsn`` with every password replaced by ``***``.

    Args:
        dsn: a ``postgresql://`` URL, a libpq keyword/value string, or a SQLite path.

    Returns:
        The same text with the secrets masked.
    """
    if "://" not in dsn:
        return _KEYWORD.sub(lambda m: f"{m['name']}{m['eq']}{_MASK}", dsn)
    scheme, _, rest = dsn.partition("://")
    authority_end = len(rest) if "?" not in rest else rest.index("?")
    at = rest.rfind("@", 0, authority_end)
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        rest = f"{user}:{_MASK}{rest[at:]}" if colon else rest
    head, question, query = rest.partition("?")
    if question:
        query = "&".join(_redact_parameter(part) for part in query.split("&"))
    return f"{scheme}://{head}{question}{query}"


def scrub(text: str, dsn: str) -> str:
    """``text`` (an error message) without ``dsn`` or any of its passwords.

    Args:
        text: what to show.
        dsn: the database URL the text may quote, whole or in part.

    Returns:
        ``text`` with the URL redacted and each password (as written and decoded) masked.
    """
    text = text.replace(dsn, redact(dsn))
    for secret in sorted(_secrets(dsn), key=len, reverse=True):
        if len(secret) >= _MIN_SCRUBBED:
            text = text.replace(secret, _MASK)
    return text


def _redact_parameter(part: str) -> str:
    name, eq, _value = part.partition("=")
    if eq and urllib.parse.unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
        return f"{name}={_MASK}"
    return part


def _secrets(dsn: str) -> set[str]:
    found: set[str] = set()
    if "://" not in dsn:
        for match in _KEYWORD.finditer(dsn):
            value = match["value"]
            found.add(value)
            if value.startswith("'"):
                inner = value[1:-1] if value.endswith("'") and len(value) > 1 else value[1:]
                found.update({inner, re.sub(r"\\(.)", r"\1", inner)})
        return found
    rest = dsn.partition("://")[2]
    authority_end = len(rest) if "?" not in rest else rest.index("?")
    at = rest.rfind("@", 0, authority_end)
    if at >= 0:
        _user, colon, password = rest[:at].partition(":")
        if colon:
            found.add(password)
    for part in rest.partition("?")[2].split("&"):
        name, eq, value = part.partition("=")
        if eq and urllib.parse.unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            found.add(value)
    return (
        found
        | {urllib.parse.unquote_plus(s) for s in found}
        | {urllib.parse.unquote(s) for s in found}
    )
