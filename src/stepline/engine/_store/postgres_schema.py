"""Postgres schema, versioned: each migration runs once, in order, under an advisory lock.

The tables mirror SQLite's (``_sqlite_schema``) so one ``SqlTx`` serves both. Ids that
are paginated by comparison are ``COLLATE "C"``: ULIDs sort by bytes, not by locale.
"""

from __future__ import annotations

from typing import Any

from stepline.engine._store import schema_version
from stepline.engine._store.rows import statements

#: The advisory lock several engines starting at once take to migrate one at a time.
MIGRATION_LOCK = 0x5_7E91_17E0

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE apps (
        app_id TEXT PRIMARY KEY, url TEXT NOT NULL, sdk TEXT, framework TEXT,
        synced_at DOUBLE PRECISION, checksum TEXT, error TEXT, mode TEXT
    );
    CREATE TABLE functions (
        function_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT,
        config TEXT NOT NULL, updated_at DOUBLE PRECISION
    );
    CREATE TABLE events (
        internal_id TEXT COLLATE "C" PRIMARY KEY, id TEXT, name TEXT NOT NULL,
        payload TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX events_name ON events (name, internal_id);
    CREATE INDEX events_id ON events (id);
    CREATE INDEX events_received ON events (received_at);
    CREATE TABLE runs (
        run_id TEXT COLLATE "C" PRIMARY KEY, function_id TEXT NOT NULL, app_id TEXT,
        status TEXT NOT NULL, events TEXT NOT NULL, event_ids TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION, output TEXT, stack TEXT NOT NULL,
        force_plan INTEGER NOT NULL, request_version INTEGER NOT NULL,
        correlation_id TEXT, parent_run_id TEXT, cancel_reason TEXT, origin TEXT,
        waiting TEXT, flow TEXT
    );
    CREATE INDEX runs_function ON runs (function_id, run_id);
    CREATE INDEX runs_status ON runs (status, run_id);
    CREATE INDEX runs_created ON runs (created_at);
    CREATE TABLE steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, name TEXT, op TEXT, status TEXT,
        mode TEXT, memo TEXT, attempts INTEGER, started_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION, seq INTEGER, error TEXT, wait TEXT,
        PRIMARY KEY (run_id, step_id)
    );
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, available_at DOUBLE PRECISION NOT NULL,
        run_id TEXT, step_id TEXT, attempt INTEGER NOT NULL, payload TEXT NOT NULL,
        lease_owner TEXT, lease_expires DOUBLE PRECISION, parked_on TEXT,
        queued_at DOUBLE PRECISION
    );
    CREATE INDEX jobs_due ON jobs (available_at);
    CREATE INDEX jobs_run ON jobs (run_id);
    CREATE INDEX jobs_parked ON jobs (parked_on, queued_at) WHERE parked_on IS NOT NULL;
    CREATE TABLE pauses (
        pause_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL,
        event_name TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL, step_id TEXT,
        expression TEXT, correlation_id TEXT, trigger_event_id TEXT, context TEXT
    );
    CREATE INDEX pauses_event ON pauses (event_name);
    CREATE INDEX pauses_run ON pauses (run_id);
    CREATE INDEX pauses_correlation ON pauses (correlation_id);
    CREATE TABLE event_runs (
        event_id TEXT NOT NULL, function_id TEXT NOT NULL, run_id TEXT, reason TEXT,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX event_runs_event ON event_runs (event_id);
    CREATE INDEX event_runs_run ON event_runs (run_id);
    CREATE TABLE idempotency (
        scope TEXT NOT NULL, key TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE limits (
        scope TEXT NOT NULL, key TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE singletons (
        function_id TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL,
        PRIMARY KEY (function_id, key)
    );
    CREATE INDEX singletons_run ON singletons (run_id);
    CREATE TABLE slots (
        key TEXT NOT NULL, job_id TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (key, job_id)
    );
    CREATE INDEX slots_job ON slots (job_id);
    CREATE INDEX slots_expiry ON slots (expires_at);
    CREATE TABLE buckets (
        function_id TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (function_id, key)
    );
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
        synced_at DOUBLE PRECISION, checksum TEXT, functions TEXT NOT NULL,
        registered_at DOUBLE PRECISION NOT NULL, sdk TEXT, framework TEXT, mode TEXT,
        PRIMARY KEY (app_id, version)
    );
    """,
    # durable streams: what a run publishes, in order (``seq`` per run); a
    # durable message's ``durable_id`` (its step) is published once
    """
    CREATE TABLE run_messages (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, data TEXT NOT NULL,
        published_at DOUBLE PRECISION NOT NULL, durable_id TEXT,
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
        function_id TEXT PRIMARY KEY, paused_at DOUBLE PRECISION, crons TEXT, reason TEXT
    );
    CREATE TABLE run_attributes (
        run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE INDEX run_attributes_value ON run_attributes (name, value, run_id);
    CREATE TABLE bulk_actions (
        bulk_id TEXT PRIMARY KEY, action TEXT NOT NULL, filter TEXT NOT NULL,
        status TEXT NOT NULL, idempotency_key TEXT, created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, cursor TEXT, matched INTEGER NOT NULL DEFAULT 0,
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
        started_at DOUBLE PRECISION, ended_at DOUBLE PRECISION, error TEXT,
        retry_at DOUBLE PRECISION,
        PRIMARY KEY (run_id, step_id, attempt)
    );
    CREATE INDEX runs_parent ON runs (parent_run_id, run_id) WHERE parent_run_id IS NOT NULL;
    """,
    # event replays: a replayed event names the event it re-sent; the index
    # lists an event's replays (``_store/browsing``)
    """
    ALTER TABLE events ADD COLUMN replay_of TEXT;
    CREATE INDEX events_replay_of ON events (replay_of) WHERE replay_of IS NOT NULL;
    """,
    # Connect on several nodes: each node's apps with a ready worker, and the
    # URL other nodes forward those apps' calls to (``_store/presence``); refreshed every
    # few seconds, so unlogged (a crash loses only what is rewritten at once)
    """
    CREATE UNLOGGED TABLE connect_presence (
        node TEXT NOT NULL, app_id TEXT NOT NULL, url TEXT NOT NULL,
        workers INTEGER NOT NULL, seen_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (app_id, node)
    );
    """,
    # event_runs.event_id in events.internal_id's collation ("C"), so the join between
    # them can use event_runs_event (with the default collation a run list by event read
    # the whole table: 83 ms at a million runs). Same type: no rewrite, the index is
    # rebuilt.
    """
    ALTER TABLE event_runs ALTER COLUMN event_id TYPE TEXT COLLATE "C";
    """,
    # a run's steps revision, one more each time any step of it is written, so
    # a worker that knows a run's steps as its last transaction left them reads them
    # again only when something else wrote one since (``RunView.load``). The trigger
    # locks the run's row: every writer of a step holds it already (``FOR UPDATE``).
    """
    ALTER TABLE runs ADD COLUMN steps_rev INTEGER NOT NULL DEFAULT 0;
    CREATE FUNCTION stepline_steps_rev() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE runs SET steps_rev = steps_rev + 1 WHERE run_id = NEW.run_id; RETURN NULL; END $$;
    CREATE TRIGGER steps_rev AFTER INSERT OR UPDATE ON steps FOR EACH ROW EXECUTE FUNCTION stepline_steps_rev();
    """,  # noqa: E501 - a function's inner ``;`` may not end a line (``statements``)
    # what each model request of an AI agent used (``stepline.ai``), one row per step,
    # written with the step (``engine._runs.tokens``): tokens per run, per function over time
    """
    CREATE TABLE model_usage (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, function_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
        model TEXT,
        PRIMARY KEY (run_id, step_id)
    );
    CREATE INDEX model_usage_function ON model_usage (function_id, at);
    """,
    # deploy-check reports a CI job uploads (``_store/deploy_checks``): one row each, and
    # a link to each app it covers, through which the apps page finds an app's newest
    # report
    """
    CREATE TABLE deploy_checks (
        check_id TEXT PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL, app_ids TEXT NOT NULL,
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
        columns TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (principal, name)
    );
    """,
    # the fencing token of a call (``Job.lease_epoch``): every lease raises it by one, and
    # an answer is recorded only if the row still has the epoch its call was leased at, so
    # a node cut off past its lease cannot record over the call's new holder
    """
    ALTER TABLE jobs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
    """,
    # the audit log (``_store/audit``): who did what through the API and the dashboard,
    # and how it ended; ids are ULIDs, so a page is a range of the primary key
    """
    CREATE TABLE audit_log (
        entry_id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, principal TEXT NOT NULL,
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


def migrate(conn: Any, known: int | None = None) -> tuple[int, int]:
    """Apply the migrations the database has not seen, one transaction each.

    Args:
        conn: a psycopg connection in autocommit mode.
        known: the newest version to apply and accept (``schema_version.newest``).

    Returns:
        ``(version before, version after)``.

    Raises:
        SchemaTooNewError: the database is past ``known`` (a newer release migrated it).
    """
    latest = schema_version.newest(len(MIGRATIONS), known)
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS stepline_schema "
            "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        before = int(conn.execute(schema_version.POSTGRES_QUERY).fetchone()[0])
        # under the lock: a newer engine migrating meanwhile has finished
        schema_version.check(before, latest)
        for number, script in enumerate(MIGRATIONS[before:latest], start=before + 1):
            with conn.transaction():
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO stepline_schema (version) VALUES (%s)", (number,))
        return before, latest
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
