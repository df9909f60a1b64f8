"""SQLite schema, versioned: each migration runs once, in order, inside one transaction."""

from __future__ import annotations

import sqlite3

from stepline.engine._store import schema_version
from stepline.engine._store.rows import statements

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE apps (
        app_id TEXT PRIMARY KEY, url TEXT NOT NULL, sdk TEXT, framework TEXT,
        synced_at REAL, checksum TEXT, error TEXT, mode TEXT
    );
    CREATE TABLE functions (
        function_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT,
        config TEXT NOT NULL, updated_at REAL
    );
    CREATE TABLE events (
        internal_id TEXT PRIMARY KEY, id TEXT, name TEXT NOT NULL,
        payload TEXT NOT NULL, received_at REAL NOT NULL
    );
    CREATE INDEX events_name ON events (name, internal_id);
    CREATE INDEX events_id ON events (id);
    CREATE INDEX events_received ON events (received_at);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, function_id TEXT NOT NULL, app_id TEXT,
        status TEXT NOT NULL, events TEXT NOT NULL, event_ids TEXT NOT NULL,
        created_at REAL NOT NULL, started_at REAL, ended_at REAL, output TEXT,
        stack TEXT NOT NULL, force_plan INTEGER NOT NULL, request_version INTEGER NOT NULL,
        correlation_id TEXT, parent_run_id TEXT, cancel_reason TEXT, origin TEXT
    );
    CREATE INDEX runs_function ON runs (function_id, run_id);
    CREATE INDEX runs_status ON runs (status, run_id);
    CREATE INDEX runs_created ON runs (created_at);
    CREATE TABLE steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, name TEXT, op TEXT, status TEXT,
        mode TEXT, memo TEXT, attempts INTEGER, started_at REAL, ended_at REAL,
        seq INTEGER, error TEXT, wait TEXT,
        PRIMARY KEY (run_id, step_id)
    ) WITHOUT ROWID;
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, available_at REAL NOT NULL,
        run_id TEXT, step_id TEXT, attempt INTEGER NOT NULL, payload TEXT NOT NULL,
        lease_owner TEXT, lease_expires REAL
    );
    CREATE INDEX jobs_due ON jobs (available_at);
    CREATE INDEX jobs_run ON jobs (run_id);
    CREATE TABLE pauses (
        pause_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL,
        event_name TEXT NOT NULL, expires_at REAL NOT NULL, step_id TEXT,
        expression TEXT, correlation_id TEXT, trigger_event_id TEXT, context TEXT
    );
    CREATE INDEX pauses_event ON pauses (event_name);
    CREATE INDEX pauses_run ON pauses (run_id);
    CREATE INDEX pauses_correlation ON pauses (correlation_id);
    CREATE TABLE event_runs (
        event_id TEXT NOT NULL, function_id TEXT NOT NULL, run_id TEXT, reason TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX event_runs_event ON event_runs (event_id);
    CREATE INDEX event_runs_run ON event_runs (run_id);
    CREATE TABLE idempotency (
        scope TEXT NOT NULL, key TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE limits (
        scope TEXT NOT NULL, key TEXT NOT NULL, value REAL NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE TABLE singletons (
        function_id TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL,
        PRIMARY KEY (function_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX singletons_run ON singletons (run_id);
    """,
    """
    ALTER TABLE runs ADD COLUMN waiting TEXT;
    ALTER TABLE runs ADD COLUMN flow TEXT;
    ALTER TABLE jobs ADD COLUMN parked_on TEXT;
    ALTER TABLE jobs ADD COLUMN queued_at REAL;
    UPDATE jobs SET queued_at = available_at;
    CREATE INDEX jobs_parked ON jobs (parked_on, queued_at);
    CREATE TABLE slots (
        key TEXT NOT NULL, job_id TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (key, job_id)
    ) WITHOUT ROWID;
    CREATE INDEX slots_job ON slots (job_id);
    CREATE INDEX slots_expiry ON slots (expires_at);
    CREATE TABLE buckets (
        function_id TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL,
        deadline REAL NOT NULL,
        PRIMARY KEY (function_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX buckets_run ON buckets (run_id);
    """,
    # the principal that started a run through the start API (the web kit's caller)
    """
    ALTER TABLE runs ADD COLUMN started_by TEXT;
    """,
    # versioning: the app version a run started on, its non-determinism
    # notices (a JSON list), every registered version of an app (the latest: the newest
    # registered_at, a new or changed registration); retention's scan
    """
    ALTER TABLE runs ADD COLUMN app_version TEXT;
    ALTER TABLE runs ADD COLUMN notices TEXT;
    CREATE INDEX runs_version ON runs (app_id, app_version, status);
    CREATE INDEX runs_ended ON runs (ended_at);
    CREATE TABLE app_versions (
        app_id TEXT NOT NULL, version TEXT NOT NULL, url TEXT NOT NULL,
        synced_at REAL, checksum TEXT, functions TEXT NOT NULL,
        registered_at REAL NOT NULL, sdk TEXT, framework TEXT, mode TEXT,
        PRIMARY KEY (app_id, version)
    );
    """,
    # durable streams: what a run publishes, in order (``seq`` per run); a
    # durable message's ``durable_id`` (its step) is published once
    """
    CREATE TABLE run_messages (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, data TEXT NOT NULL,
        published_at REAL NOT NULL, durable_id TEXT,
        PRIMARY KEY (run_id, seq)
    );
    CREATE UNIQUE INDEX run_messages_durable ON run_messages (run_id, durable_id)
        WHERE durable_id IS NOT NULL;
    """,
    # run control: paused functions (``crons``: what their cron ticks do while
    # paused); searchable run attributes (one row per name); bulk actions over a filter,
    # with their progress (``cursor``: the last run id handled); a wait for a signal
    # (``pauses.signal``: its key, unique among waiting steps)
    """
    CREATE TABLE function_controls (
        function_id TEXT PRIMARY KEY, paused_at REAL, crons TEXT, reason TEXT
    );
    CREATE TABLE run_attributes (
        run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE INDEX run_attributes_value ON run_attributes (name, value, run_id);
    CREATE TABLE bulk_actions (
        bulk_id TEXT PRIMARY KEY, action TEXT NOT NULL, filter TEXT NOT NULL,
        status TEXT NOT NULL, idempotency_key TEXT, created_at REAL NOT NULL,
        updated_at REAL NOT NULL, cursor TEXT, matched INTEGER NOT NULL DEFAULT 0,
        applied INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0, error TEXT
    );
    CREATE UNIQUE INDEX bulk_actions_key ON bulk_actions (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    ALTER TABLE pauses ADD COLUMN signal TEXT;
    CREATE UNIQUE INDEX pauses_signal ON pauses (signal) WHERE signal IS NOT NULL;
    """,
    # function metrics: a function's runs by end time, and its live runs
    # (``ended_at IS NULL``), for the function page's charts (``_store/function_metrics``)
    """
    CREATE INDEX runs_function_ended ON runs (function_id, ended_at);
    """,
    # run page depth: every failed attempt of a step (``_store/attempts``), and
    # a run's child runs (started by its ``step.invoke``) for its trace view
    """
    CREATE TABLE step_attempts (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        started_at REAL, ended_at REAL, error TEXT, retry_at REAL,
        PRIMARY KEY (run_id, step_id, attempt)
    ) WITHOUT ROWID;
    CREATE INDEX runs_parent ON runs (parent_run_id, run_id) WHERE parent_run_id IS NOT NULL;
    """,
    # event replays: a replayed event names the event it re-sent; the index
    # lists an event's replays (``_store/browsing``)
    """
    ALTER TABLE events ADD COLUMN replay_of TEXT;
    CREATE INDEX events_replay_of ON events (replay_of) WHERE replay_of IS NOT NULL;
    """,
    # a run's steps revision, one more each time any step of it is written, so
    # a worker that knows a run's steps as its last transaction left them reads them
    # again only when something else wrote one since (``RunView.load``)
    """
    ALTER TABLE runs ADD COLUMN steps_rev INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER steps_rev_insert AFTER INSERT ON steps BEGIN UPDATE runs SET steps_rev = steps_rev + 1 WHERE run_id = NEW.run_id; END;
    CREATE TRIGGER steps_rev_update AFTER UPDATE ON steps BEGIN UPDATE runs SET steps_rev = steps_rev + 1 WHERE run_id = NEW.run_id; END;
    """,  # noqa: E501 - a trigger's inner ``;`` may not end a line (``statements``)
    # ``jobs_parked`` over parked jobs only, as on Postgres: a call's row rewritten for the
    # run's next one (``MOVE_JOB``) sets ``queued_at``, which would rewrite an index over
    # every job
    """
    DROP INDEX jobs_parked;
    CREATE INDEX jobs_parked ON jobs (parked_on, queued_at) WHERE parked_on IS NOT NULL;
    """,
    # what each model request of an AI agent used (``stepline.ai``), one row per step,
    # written with the step (``engine._runs.tokens``): tokens per run, per function over time
    """
    CREATE TABLE model_usage (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, function_id TEXT NOT NULL,
        at REAL NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
        model TEXT,
        PRIMARY KEY (run_id, step_id)
    ) WITHOUT ROWID;
    CREATE INDEX model_usage_function ON model_usage (function_id, at);
    """,
    # deploy-check reports a CI job uploads (``_store/deploy_checks``): one row each, and
    # a link to each app it covers, through which the apps page finds an app's newest
    # report
    """
    CREATE TABLE deploy_checks (
        check_id TEXT PRIMARY KEY, received_at REAL NOT NULL, app_ids TEXT NOT NULL,
        ok INTEGER NOT NULL, counts TEXT NOT NULL, report TEXT NOT NULL
    );
    CREATE TABLE deploy_check_apps (
        app_id TEXT NOT NULL, check_id TEXT NOT NULL,
        PRIMARY KEY (app_id, check_id)
    );
    CREATE INDEX deploy_check_apps_check ON deploy_check_apps (check_id);
    """,
    # run queries (``_store/run_query``): runs by app version and by start time, newest
    # first; each principal's saved views of the runs page (``_store/saved_views``)
    """
    CREATE INDEX runs_app_version ON runs (app_version, run_id);
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE saved_views (
        principal TEXT NOT NULL, name TEXT NOT NULL, query TEXT NOT NULL,
        columns TEXT NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (principal, name)
    );
    """,
    # the fencing token of a call (``Job.lease_epoch``): every lease raises it by one, and
    # an answer is recorded only if the row still has the epoch its call was leased at, so
    # a node cut off past its lease cannot record over the call's new holder
    """
    ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
    """,
    # the audit log (``_store/audit``): who did what through the API and the dashboard,
    # and how it ended; ids are ULIDs, so a page is a range of the primary key
    """
    CREATE TABLE audit_log (
        entry_id TEXT PRIMARY KEY, at REAL NOT NULL, principal TEXT NOT NULL,
        role TEXT NOT NULL, credential TEXT NOT NULL, via TEXT, action TEXT NOT NULL,
        target TEXT NOT NULL, outcome TEXT NOT NULL, status INTEGER NOT NULL
    );
    CREATE INDEX audit_log_principal ON audit_log (principal, entry_id);
    """,
    # a run's completion order is its done steps' ``seq`` (``Run.stack``), read through
    # this index: the next ``seq`` in one entry, the order without a step row decoded.
    # ``runs.stack`` is written empty (``rows._NO_STACK``): an engine of a release that
    # read the order from it must not run on this schema (``schema_version`` refuses it)
    """
    CREATE INDEX steps_done ON steps (run_id, seq) WHERE seq IS NOT NULL;
    """,
)


def migrate(conn: sqlite3.Connection, known: int | None = None) -> tuple[int, int]:
    """Apply the migrations the database has not seen; returns ``(before, after)``.

    Args:
        conn: a connection inside a write transaction (``BEGIN IMMEDIATE``).
        known: the newest version to apply and accept (``schema_version.newest``).

    Raises:
        SchemaTooNewError: the database is past ``known`` (a newer release migrated it).
    """
    latest = schema_version.newest(len(MIGRATIONS), known)
    version: int = conn.execute(schema_version.SQLITE_QUERY).fetchone()[0]
    schema_version.check(version, latest)
    for number, script in enumerate(MIGRATIONS[version:latest], start=version + 1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    return version, latest
