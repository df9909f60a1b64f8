"""Django's ``DATABASES`` entry for a test database URL (the relay's Django cases)."""

from __future__ import annotations

import urllib.parse
from typing import Any


def database(dialect: str, url: str) -> dict[str, Any]:
    if dialect == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url}
    parts = urllib.parse.urlsplit(url)
    common = {
        "HOST": parts.hostname,
        "PORT": str(parts.port or ""),
        "USER": urllib.parse.unquote(parts.username or ""),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "NAME": parts.path.lstrip("/"),
    }
    if dialect == "postgresql":
        query = dict(urllib.parse.parse_qsl(parts.query))
        options = {"options": query["options"]} if "options" in query else {}
        return {"ENGINE": "django.db.backends.postgresql", "OPTIONS": options, **common}
    import pymysql

    pymysql.install_as_MySQLdb()
    return {"ENGINE": "django.db.backends.mysql", **common}
