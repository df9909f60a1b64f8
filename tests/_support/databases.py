"""Fresh databases on the servers the suites run against, and the engine's store matrix.

``STEPLINE_TEST_POSTGRES_URL`` and ``STEPLINE_TEST_MYSQL_URL`` name the servers; each helper
gives a new, empty schema or database and drops it afterwards. A server that cannot be
reached fails the test under CI (``CI=true``) and skips it elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests._support.ci import unavailable

#: The Postgres the suites run against (a fresh schema per test); CI fails without it.
POSTGRES_URL = os.environ.get(
    "STEPLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
#: The MariaDB/MySQL the suites run against (a fresh database per test); CI fails without it.
MYSQL_URL = os.environ.get("STEPLINE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

#: The stores every engine test runs on (the ids of the parametrized fixtures).
STORES = ("sqlite", "postgres")


@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A database URL whose ``search_path`` is a new, empty schema (dropped afterwards)."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with _postgres_admin() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{name}"
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@contextlib.contextmanager
def postgres_database(prefix: str = "t") -> Iterator[str]:
    """A URL of a new, empty database (dropped afterwards): for what a schema does not
    isolate, such as ``LISTEN``/``NOTIFY`` channels, which are per database."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with _postgres_admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield urllib.parse.urlunsplit(
                urllib.parse.urlsplit(POSTGRES_URL)._replace(path=f"/{name}")
            )
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _postgres_admin() -> Any:
    """An autocommit connection to ``POSTGRES_URL``."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"Postgres at {POSTGRES_URL}: {exc}")


@contextlib.contextmanager
def mysql_database() -> Iterator[str]:
    """A ``mysql://`` URL of a new, empty database (dropped afterwards)."""
    import pymysql

    parts = urllib.parse.urlsplit(MYSQL_URL)
    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        admin = pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=urllib.parse.unquote(parts.username or "root"),
            password=urllib.parse.unquote(parts.password or ""),
            autocommit=True,
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        unavailable(f"MariaDB/MySQL at {MYSQL_URL}: {exc}")
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@contextlib.contextmanager
def database(store: str, directory: Path) -> Iterator[str]:
    """An engine's database URL on ``store`` (one of ``STORES``): a SQLite file in
    ``directory``, or a fresh Postgres schema."""
    if store == "sqlite":
        yield str(directory / "engine.db")
    else:
        with postgres_schema() as url:
            yield url
