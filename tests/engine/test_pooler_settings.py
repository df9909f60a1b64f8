"""The settings for Postgres behind a connection pooler, and what the engine refuses at start.

No server: what is decided from the settings alone (``_store/pooler.py``). The pooler
itself, and the check at start that needs one, are in ``test_pg_pooler.py``.
"""

from __future__ import annotations

import os

import pytest

from stepline.engine import Engine, EngineConfigError, EngineSettings, resolve
from stepline.engine._cli.commands import main
from stepline.engine._store import pooler, store_for
from stepline.engine._store.postgres import PostgresStore
from tests._support.processes import ENV_PREFIXES

POOLED = "postgresql://app@pooler:6432/app"
DIRECT = "postgresql://app@db:5432/app"


def test_the_settings_come_from_the_environment_and_the_flags_win() -> None:
    env = {
        "STEPLINE_DATABASE_URL": POOLED,
        "STEPLINE_DATABASE_DIRECT_URL": DIRECT,
        "STEPLINE_DB_POOLER": "transaction",
        "STEPLINE_DB_SCHEMA": "stepline",
    }
    settings = resolve(environ=env)
    assert (settings.database_direct_url, settings.db_pooler, settings.db_schema) == (
        DIRECT,
        "transaction",
        "stepline",
    )
    assert resolve(environ=env, db_pooler="session").db_pooler == "session"
    assert resolve(environ={}).db_pooler == "none"


def test_transaction_mode_turns_prepared_statements_off_and_sets_the_schema_per_transaction() -> (
    None
):
    plain = pooler.Connections(DIRECT)
    assert (plain.session_url, plain.pool_options, plain.on_begin, plain.on_connect) == (
        DIRECT,
        {},
        None,
        None,
    )
    pooled = pooler.Connections(POOLED, DIRECT, "transaction", "stepline")
    assert pooled.session_url == DIRECT  # LISTEN and migrations
    assert pooled.pool_options == {"prepare_threshold": None}
    assert pooled.on_begin == "SET LOCAL search_path TO stepline"
    assert pooled.on_connect is None  # a pooled connection's session is not its own
    assert pooled.on_session == "SET search_path TO stepline"
    session = pooler.Connections(POOLED, None, "session", "stepline")
    assert session.session_url == POOLED  # a session pooler lends whole sessions
    assert (session.on_begin, session.on_connect) == (None, "SET search_path TO stepline")
    assert pooler.Connections(POOLED, None, "transaction").session_url is None  # polling


@pytest.mark.parametrize(
    ("connections", "migrate", "names"),
    [
        (pooler.Connections(POOLED, None, "transaction"), True, "STEPLINE_DATABASE_DIRECT_URL"),
        (
            pooler.Connections(f"{POOLED}?options=-csearch_path%3Dx", DIRECT, "session"),
            False,
            "STEPLINE_DB_SCHEMA",
        ),
        (pooler.Connections(POOLED, None, "pgbouncer"), True, "STEPLINE_DB_POOLER"),  # type: ignore[arg-type]
        (pooler.Connections(DIRECT, None, "none", "a;DROP"), True, "STEPLINE_DB_SCHEMA"),
    ],
    ids=["migrate-without-session", "startup-options", "unknown-mode", "schema-name"],
)
def test_what_cannot_work_is_refused_naming_the_setting(
    connections: pooler.Connections, migrate: bool, names: str
) -> None:
    problem = pooler.problem(connections, migrate=migrate)
    assert problem is not None
    assert names in problem
    assert "\n" not in problem
    settings = EngineSettings(
        database_url=connections.url,
        database_direct_url=connections.direct_url,
        db_pooler=connections.pooler,
        db_schema=connections.schema,
        migrate=migrate,
    )
    with pytest.raises(EngineConfigError) as refused:
        store_for(settings)
    assert str(refused.value) == problem
    with pytest.raises(ValueError, match="STEPLINE_"):  # built directly, as tests do
        PostgresStore(
            connections.url,
            direct_url=connections.direct_url,
            pooler=connections.pooler,
            db_schema=connections.schema,
            migrate=migrate,
        )


def test_what_can_work_is_not_refused() -> None:
    for connections, migrate in [
        (pooler.Connections(POOLED, None, "transaction"), False),  # migrated apart; polls
        (pooler.Connections(POOLED, DIRECT, "transaction", "stepline"), True),
        (pooler.Connections(f"{DIRECT}?options=-csearch_path%3Dx"), True),  # no pooler
    ]:
        assert pooler.problem(connections, migrate=migrate) is None


def test_the_cli_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    assert main(["dev", "--db", POOLED, "--db-pooler", "transaction"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"stepline dev: {POOLED}: "
        + str(pooler.problem(pooler.Connections(POOLED, None, "transaction"), migrate=True))
    )


def test_the_direct_url_s_password_is_hidden_like_the_database_url_s() -> None:
    direct = "postgresql://app:direct-secret@db:5432/app"
    settings = EngineSettings(
        database_url="postgresql://app:pooled-secret@pooler:6432/app",
        database_direct_url=direct,
        db_pooler="transaction",
    )
    said = f"failed: {direct} (direct-secret), {settings.database_url} (pooled-secret)"
    shown = Engine(settings)._scrub(said)
    assert "secret" not in shown
    assert "postgresql://app:***@db:5432/app" in shown
