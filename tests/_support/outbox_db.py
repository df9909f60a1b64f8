"""The outbox tests' databases: one fresh database of a dialect (SQLite, Postgres, MariaDB),
reachable by DB-API, SQLAlchemy and Django, with the outbox table and its rows.

``fresh`` gives a temp SQLite file, a new Postgres schema or a new MariaDB database; a
server that cannot be reached fails the test under CI (``CI=true``) and skips it elsewhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepline.outbox import ddl
from tests._support.databases import mysql_database, postgres_schema

DIALECTS = ("sqlite", "postgresql", "mysql")


@dataclasses.dataclass(frozen=True)
class Database:
    """One fresh database of a dialect, reachable by DB-API, SQLAlchemy and Django."""

    dialect: str
    url: str  # sqlite: a file path; else postgresql:// or mysql://

    def connect(self) -> Any:
        """A new DB-API connection (transactions on: commit or roll back yourself)."""
        if self.dialect == "sqlite":
            return sqlite3.connect(self.url)
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(self.url)
        import pymysql

        parts = urllib.parse.urlsplit(self.url)
        return pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=urllib.parse.unquote(parts.username or "root"),
            password=urllib.parse.unquote(parts.password or ""),
            database=parts.path.lstrip("/"),
        )

    def sqlalchemy_url(self, *, asynchronous: bool = False) -> str:
        """The database as a SQLAlchemy URL (sync or async driver)."""
        if self.dialect == "sqlite":
            return f"sqlite+{'aiosqlite' if asynchronous else 'pysqlite'}:///{self.url}"
        driver = {"postgresql": "psycopg", "mysql": "aiomysql" if asynchronous else "pymysql"}
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}+{driver[self.dialect]}://{rest}"

    def django(self) -> dict[str, Any]:
        """The database as Django's ``DATABASES`` entry."""
        if self.dialect == "sqlite":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": self.url}
        parts = urllib.parse.urlsplit(self.url)
        common = {
            "HOST": parts.hostname,
            "PORT": str(parts.port or ""),
            "USER": urllib.parse.unquote(parts.username or ""),
            "PASSWORD": urllib.parse.unquote(parts.password or ""),
            "NAME": parts.path.lstrip("/"),
        }
        if self.dialect == "postgresql":
            query = dict(urllib.parse.parse_qsl(parts.query))
            options = {"options": query["options"]} if "options" in query else {}
            return {"ENGINE": "django.db.backends.postgresql", "OPTIONS": options, **common}
        import pymysql

        pymysql.install_as_MySQLdb()
        return {"ENGINE": "django.db.backends.mysql", **common}

    def create_table(self) -> None:
        """The outbox table, from the plain DDL."""
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            for statement in ddl(self.dialect):
                cursor.execute(statement)
            connection.commit()

    def rows(self) -> list[dict[str, Any]]:
        """The outbox's rows in id order."""
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(
                "SELECT id, created_at, kind, body, delivered_at, attempts, last_error "
                "FROM stepline_outbox ORDER BY id"
            )
            names = [d[0] for d in cursor.description]
            found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            connection.rollback()
        return found

    def mark_delivered(self, row_id: int) -> None:
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            mark = "?" if self.dialect == "sqlite" else "%s"
            cursor.execute(
                f"UPDATE stepline_outbox SET delivered_at = {mark} WHERE id = {mark}",
                (time.time(), row_id),
            )
            connection.commit()


@contextlib.contextmanager
def fresh(dialect: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of ``dialect``."""
    if dialect == "sqlite":
        tmp_path.mkdir(parents=True, exist_ok=True)
        yield Database("sqlite", str(tmp_path / "app.db"))
    elif dialect == "postgresql":
        with postgres_schema("outbox") as url:
            yield Database("postgresql", url)
    else:
        with mysql_database() as url:
            yield Database("mysql", url)
