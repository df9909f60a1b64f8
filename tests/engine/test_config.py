"""Engine settings: precedence, validation, and the values the stores are built with."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from stepline.engine import EngineConfigError, EngineSettings, resolve
from stepline.engine._store import store_for
from stepline.engine._store.postgres import PostgresStore
from stepline.engine._store.sqlite import SqliteStore

KEY = "signkey-test-" + "ab" * 16


def test_arguments_win_over_stepline_which_win_over_inngest() -> None:
    env = {"STEPLINE_SIGNING_KEY": "cd" * 16, "INNGEST_SIGNING_KEY": "ef" * 16}
    assert resolve(environ=env, signing_key=KEY).signing_key == KEY
    assert resolve(environ=env).signing_key == "cd" * 16
    assert resolve(environ={"INNGEST_SIGNING_KEY": "ef" * 16}).signing_key == "ef" * 16
    env = {"STEPLINE_EVENT_KEY": "one, two,", "STEPLINE_PORT": "9000"}
    settings = resolve(environ=env)
    assert settings.event_keys == ("one", "two")
    assert settings.port == 9000
    assert resolve(environ=env, port=9001).port == 9001


def test_database_url_and_pool_size_from_the_environment() -> None:
    env = {"STEPLINE_DATABASE_URL": "postgresql://db/x", "STEPLINE_DB_POOL_SIZE": "4"}
    settings = resolve(environ=env)
    assert settings.database_url == "postgresql://db/x"
    assert settings.db_pool_size == 4
    assert resolve(environ={}).db_pool_size == 10
    assert resolve(environ=env, database_url="other.db").database_url == "other.db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STEPLINE_DB_POOL_SIZE": "many"}, "STEPLINE_DB_POOL_SIZE must be an integer"),
        ({"STEPLINE_DB_POOL_SIZE": "0"}, "pool size must be 1-1000, got 0"),
        ({"STEPLINE_PORT": "http"}, "STEPLINE_PORT must be an integer, got 'http'"),
        ({"STEPLINE_PORT": "70000"}, "port must be 1-65535"),
        (
            {"STEPLINE_SIGNING_KEY": "not-hex"},
            r"\(--signing-key / STEPLINE_SIGNING_KEY\) must be hex",
        ),
        ({"STEPLINE_SQLITE_SYNCHRONOUS": "off"}, "SQLite synchronous must be NORMAL or FULL"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(EngineConfigError, match=message):
        resolve(environ=env)


def test_start_needs_keys_and_dev_stays_on_loopback() -> None:
    with pytest.raises(EngineConfigError, match="signing key"):
        resolve(mode="start", environ={})
    with pytest.raises(EngineConfigError, match="event key"):
        resolve(mode="start", environ={}, signing_key=KEY)
    assert resolve(mode="start", environ={}, signing_key=KEY, event_keys=["k"]).server_kind == (
        "cloud"
    )
    with pytest.raises(EngineConfigError, match="--allow-public"):
        resolve(environ={}, host="0.0.0.0")
    assert resolve(environ={}, host="0.0.0.0", allow_public_bind=True).host == "0.0.0.0"


def test_the_url_picks_the_store() -> None:
    pg = store_for(EngineSettings(database_url="postgresql://nobody@127.0.0.1/x", db_pool_size=3))
    assert isinstance(pg, PostgresStore)
    assert pg._pool.max_size == 3  # the pool is not opened until the engine starts
    for url, path in (("sqlite:///a/b.db", "a/b.db"), ("plain.db", "plain.db")):
        settings = EngineSettings(database_url=url)
        assert settings.sqlite_path == path
        assert isinstance(store_for(settings), SqliteStore)
    assert EngineSettings(database_url="sqlite://").sqlite_path == ":memory:"


def test_sqlite_durability_is_a_setting(tmp_path: pathlib.Path) -> None:
    assert resolve(environ={}).sqlite_synchronous == "NORMAL"
    env = {"STEPLINE_SQLITE_SYNCHRONOUS": " full "}
    assert resolve(environ=env).sqlite_synchronous == "FULL"
    assert resolve(environ=env, sqlite_synchronous="NORMAL").sqlite_synchronous == "NORMAL"
    for level, pragma in (("NORMAL", 1), ("FULL", 2)):
        settings = EngineSettings(
            database_url=str(tmp_path / f"{level}.db"), sqlite_synchronous=level
        )
        store = store_for(settings)
        assert isinstance(store, SqliteStore)

        async def check(store: SqliteStore = store, pragma: int = pragma) -> None:
            await store.open()
            try:
                assert await store.atomic(_synchronous) == pragma  # the writer's connection
                assert await store.read(_synchronous) == pragma  # and the readers'
            finally:
                await store.close()

        asyncio.run(check())


def _synchronous(tx: Any) -> int:
    assert tx._c.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY: savepoints' pages
    value: int = tx._c.execute("PRAGMA synchronous").fetchone()[0]
    return value


def test_the_banner_says_what_a_sqlite_commit_survives(tmp_path: pathlib.Path) -> None:
    from stepline.engine import Engine
    from stepline.engine._cli.commands import banner

    db = str(tmp_path / "x.db")
    text = banner(Engine(EngineSettings(database_url=db)))
    assert f"Database   {db} (SQLite, synchronous=NORMAL: commits survive a crash" in text
    text = banner(Engine(EngineSettings(database_url=db, sqlite_synchronous="FULL")))
    assert "(SQLite, synchronous=FULL: commits survive power loss)" in text
