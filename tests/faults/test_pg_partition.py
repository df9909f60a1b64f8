"""A partitioned node is fenced: engines in network namespaces, one cut off mid-step.

Each engine node (``tests/apps/partition_node.py``, a whole engine process) runs in a
network namespace of its own (``tests/_support/netns.py``) and reaches the database (the
shared Postgres, through a forwarder on the hub address) and the app
(``tests/apps/partition_app.py``, one process in the root namespace) through its one
link. The function's one step sleeps ``STEP_SECONDS``, several leases (``LEASE``). Once the
step runs, the link of the node that called it is set down: its database connections
stall, its heartbeats stop reaching the database, the app's answer cannot reach it.

* ``test_a_partitioned_node_is_fenced``: two nodes. The other node takes the call over
  once the lease lapses and calls the app again; the link heals before the first call's
  answer, which then reaches its node while the survivor's call is still running. That
  late answer must not be recorded (the lease epoch checked in the recording
  transaction): the step's recorded result, and the run's, are the survivor's.
* ``test_a_node_without_its_database_stops_leasing_and_resumes``: one node. Past its
  lease without the database it stops leasing and gives its call up as lost; when the
  link heals it resumes, leases the call again itself and calls the app again. The
  first call's answer, arriving after that, comes from the very same owner: only the
  epoch tells it from the call's current lease, and it must not be recorded.

Counted in both: runs lost, runs completed twice, steps recorded twice (the step's
recorded value not the one its current lease's call returned) and the step's executions.
Figures are printed as one JSON line each (``-s``): seconds from the cut to the takeover,
to the cut-off node stopping, from the heal to it resuming; docs/production-postgres.md
quotes them.

The node's database URL sets ``tcp_user_timeout`` (a stalled connection fails in a
second instead of retransmitting for minutes) and ``idle_in_transaction_session_timeout``
(the server ends a transaction whose client fell silent mid-way, releasing the rows it
locked): both as docs/production-postgres.md advises for production.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from stepline.engine._worker.worker import CUT_OFF_FLOOR
from tests._support import netns
from tests._support.databases import postgres_database
from tests._support.polling import wait_until
from tests._support.processes import APPS, clean_env, free_port, log_tail, spawn, stop

pytestmark = [pytest.mark.postgres, pytest.mark.process, pytest.mark.slow]

LEASE = 2.0
#: ``partition_app.STEP_SECONDS``
STEP_SECONDS = 12.0
EVENT = "partition/go"
ENGINE_PORT = 8288  # each node has a namespace, so a port space, of its own
#: stalled connections fail after this long; a transaction left open by a client that
#: fell silent is ended by the server after that long
TCP_USER_TIMEOUT_MS = 1000
IDLE_IN_TRANSACTION_MS = 3000
#: a node stops leasing this long after the cut at most: past ``CUT_OFF_FLOOR`` (5 s,
#: more than the lease here) since its last transaction, at its next heartbeat
STOP_WITHIN = CUT_OFF_FLOOR + LEASE / 3 + 1.5
#: the link heals this long after the cut: after the node stopped, before its call ends
HEAL_AFTER = 7.5
STOPPED = "the database has been out of reach"
RESUMED = "the database answers again"
FENCED = "the answer of a call given up as lost is not recorded"


@dataclasses.dataclass
class Setup:
    nodes: list[netns.Node]
    procs: list[object]
    logs: list[Path]
    app_log: Path
    admin_url: str

    def url(self, i: int) -> str:
        return f"http://{self.nodes[i].address}:{ENGINE_PORT}"

    def log(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace") if self.logs[i].exists() else ""


def _node_url(db: str, host: str, port: int) -> str:
    parts = urllib.parse.urlsplit(db)
    netloc = f"{parts.username}@{host}:{port}" if parts.username else f"{host}:{port}"
    query = urllib.parse.urlencode(
        {
            "tcp_user_timeout": str(TCP_USER_TIMEOUT_MS),
            "connect_timeout": "2",
            "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
        },
        quote_via=urllib.parse.quote,
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


@contextlib.contextmanager
def _cluster(tmp_path: Path, count: int) -> Iterator[Setup]:
    with netns.network(count) as net, postgres_database("part") as db:
        target = urllib.parse.urlsplit(db)
        forward = netns.Forwarder(net.hub, (target.hostname or "127.0.0.1", target.port or 5432))
        node_db = _node_url(db, net.hub, forward.port)
        app_port, app_log = free_port(), tmp_path / "steps.log"
        app_log.touch()
        procs: list[object] = []
        try:
            logs = [tmp_path / f"node{i}.out" for i in range(count)]
            for node, log in zip(net.nodes, logs, strict=True):
                argv = [
                    sys.executable, str(APPS / "partition_node.py"),
                    node.address, str(ENGINE_PORT), node_db, str(LEASE),
                ]  # fmt: skip
                procs.append(spawn(node.command(argv), log=log, env=clean_env()))
            # the app registers itself (answering the sync) with the first node
            engine = f"http://{net.nodes[0].address}:{ENGINE_PORT}"
            env = {"STEPLINE_API_BASE_URL": engine, "STEPLINE_EVENT_API_BASE_URL": engine}
            app = spawn(
                [
                    sys.executable,
                    str(APPS / "partition_app.py"),
                    net.hub,
                    str(app_port),
                    str(app_log),
                ],
                log=tmp_path / "app.out",
                env=clean_env(**env),
            )
            procs.insert(0, app)
            setup = Setup(net.nodes, procs, logs, app_log, db)
            app_url = f"http://{net.hub}:{app_port}/api/inngest"
            wait_until(lambda: _answers(app_url), timeout=30, message=f"the app at {app_url}")
            for i in range(count):
                wait_until(
                    lambda i=i: _answers(f"{setup.url(i)}/health"),
                    timeout=30,
                    message=lambda i=i: f"node {i} to answer: {log_tail(logs[i])}",
                )
            synced = httpx.post(f"{setup.url(0)}/v1/apps/sync", json={"url": app_url}, timeout=30)
            assert synced.status_code == 200, synced.text
            yield setup
        finally:
            for proc in procs:
                stop(proc)  # type: ignore[arg-type]
            forward.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _executions(app_log: Path) -> dict[int, dict[str, float]]:
    """Each step execution's ``begin`` and ``end`` times, by number."""
    found: dict[int, dict[str, float]] = {}
    for line in app_log.read_text().splitlines():
        kind, number, at = line.split()
        found.setdefault(int(number), {})[kind] = float(at)
    return found


def _began(app_log: Path, number: int) -> float | None:
    return _executions(app_log).get(number, {}).get("begin")


def _logged(text: str, needle: str, after: float = 0.0) -> float | None:
    """The time of the first line of a node's log holding ``needle`` (after ``after``)."""
    for line in text.splitlines():
        match = re.match(r"(\d+\.\d+) ", line)
        if needle in line and match and float(match.group(1)) >= after:
            return float(match.group(1))
    return None


def _start(setup: Setup, node: int) -> str:
    """Send the event to ``node``; the run id it started."""
    sent = httpx.post(f"{setup.url(node)}/e/key", json=[{"name": EVENT, "data": {}}], timeout=10)
    assert sent.status_code == 200, sent.text
    with psycopg.connect(setup.admin_url, autocommit=True) as conn:
        found: list[str] = []

        def started() -> bool:
            found[:] = [r for (r,) in conn.execute("SELECT run_id FROM runs").fetchall()]
            return bool(found)

        wait_until(started, timeout=15, message="the run to start")
    assert len(found) == 1
    return found[0]


def _holder(setup: Setup, run_id: str) -> tuple[int, int]:
    """Which node holds the run's call now (by the lease owner's pid), and its epoch."""
    with psycopg.connect(setup.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT lease_owner, lease_epoch FROM jobs WHERE run_id = %s AND kind = 'execute' "
            "AND lease_owner IS NOT NULL",
            (run_id,),
        ).fetchone()
    assert row is not None, "the call is not leased"
    pid = int(str(row[0]).split("-", 1)[0])
    pids = [proc.pid for proc in setup.procs[1:]]  # type: ignore[attr-defined]
    return pids.index(pid), int(row[1])


@dataclasses.dataclass
class Outcome:
    status: str
    output: str | None
    step: str | None
    finished_events: int


def _outcome(setup: Setup, run_id: str) -> Outcome:
    with psycopg.connect(setup.admin_url, autocommit=True) as conn:
        status, output = conn.execute(
            "SELECT status, output FROM runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        steps = conn.execute(
            "SELECT memo FROM steps WHERE run_id = %s AND name = 'slow'", (run_id,)
        ).fetchall()
        finished = conn.execute(
            "SELECT count(*) FROM events WHERE name = 'inngest/function.finished' "
            "AND payload LIKE %s",
            (f"%{run_id}%",),
        ).fetchone()[0]
    assert len(steps) <= 1
    return Outcome(status, output, steps[0][0] if steps else None, int(finished))


def _completed(setup: Setup, run_id: str, timeout: float) -> Outcome:
    latest: list[Outcome] = []

    def done() -> bool:
        latest[:] = [_outcome(setup, run_id)]
        return latest[0].status == "Completed"

    wait_until(done, timeout=timeout, message=lambda: f"the run to complete: {latest}")
    return latest[0]


def _state(setup: Setup) -> str:
    """The queue, the step log and the nodes' logs, for a failure's message."""
    with psycopg.connect(setup.admin_url, autocommit=True) as conn:
        jobs = conn.execute(
            "SELECT job_id, lease_owner, lease_expires, lease_epoch FROM jobs"
        ).fetchall()
        # who holds what: a row lock held by a backend the cut-off node left behind keeps
        # the survivor (which skips locked rows) from taking the call
        backends = conn.execute(
            "SELECT a.pid, a.state, a.wait_event_type, a.wait_event, "
            "round(extract(epoch FROM now() - a.xact_start)::numeric, 1), "
            "left(a.query, 120), array_agg(DISTINCT l.mode) FILTER (WHERE l.mode IS NOT NULL) "
            "FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid "
            "AND l.relation = 'jobs'::regclass "
            "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
            "GROUP BY a.pid, a.state, a.wait_event_type, a.wait_event, a.xact_start, a.query"
        ).fetchall()
    logs = "\n".join(
        f"node {i} (pid {p.pid}):\n{setup.log(i)[-4000:]}" for i, p in enumerate(setup.procs[1:])
    )  # type: ignore[attr-defined]
    held = "\n".join(map(str, backends))
    steps = setup.app_log.read_text()
    return f"jobs {jobs} at {time.time():.3f}\nbackends:\n{held}\nsteps:\n{steps}\n{logs}"


def _decoded(value: str | None) -> object:
    """A recorded value: a run's output, or a step's (``{"data": ...}``) as returned."""
    found = None if value is None else json.loads(value)
    return found["data"] if isinstance(found, dict) and "data" in found else found


@pytest.mark.timeout(150)
def test_a_partitioned_node_is_fenced(tmp_path: Path) -> None:
    with _cluster(tmp_path, 2) as setup:
        run_id = _start(setup, 0)
        wait_until(lambda: _began(setup.app_log, 1), timeout=20, message="the step's first call")
        cut_off, epoch = _holder(setup, run_id)
        survivor = 1 - cut_off
        time.sleep(0.3)  # a heartbeat or two in, mid-step
        cut_at = setup.nodes[cut_off].cut()
        wait_until(
            lambda: _began(setup.app_log, 2),
            timeout=20,
            message=lambda: f"the survivor to take the call: {_state(setup)}",
        )
        took_over = _began(setup.app_log, 2)
        assert took_over is not None
        holder, new_epoch = _holder(setup, run_id)
        assert (holder, new_epoch) == (survivor, epoch + 1)
        # healed while both calls run: the cut-off node's answer comes in before the
        # survivor's (the first call began earlier), while the survivor holds the call
        time.sleep(max(0.0, cut_at + HEAL_AFTER - time.time()))
        healed_at = setup.nodes[cut_off].heal()
        first = _executions(setup.app_log)[1]
        assert healed_at < first["begin"] + STEP_SECONDS - 1.0, "healed too late to matter"
        wait_until(
            lambda: "end" in _executions(setup.app_log).get(2, {}),
            timeout=30,
            message="the survivor's call to end",
        )
        outcome = _completed(setup, run_id, timeout=30)
        time.sleep(1.0)  # anything still to come from the cut-off node
        outcome = _outcome(setup, run_id)
        executions = _executions(setup.app_log)
        cut_log = setup.log(cut_off)
        stopped = _logged(cut_log, STOPPED, cut_at)
        resumed = _logged(cut_log, RESUMED, healed_at)
        fenced = _logged(cut_log, FENCED, healed_at)
        figures = {
            "lease_s": LEASE,
            "takeover_after_cut_s": round(took_over - cut_at, 2),
            "cut_off_stopped_after_cut_s": None if stopped is None else round(stopped - cut_at, 2),
            "cut_off_resumed_after_heal_s": None
            if resumed is None
            else round(resumed - healed_at, 2),
            "late_answer_fenced_after_heal_s": None
            if fenced is None
            else round(fenced - healed_at, 2),
            "step_executions": len(executions),
            "runs_lost": int(outcome.status != "Completed"),
            "runs_completed_twice": int(outcome.finished_events > 1),
            "recorded": _decoded(outcome.step),
        }
        print(json.dumps({"partition": figures}))
        print("cut-off node's log:\n" + cut_log)
        # the step's recorded result and the run's are the survivor's call's ...
        assert _decoded(outcome.step) == "exec-2", (figures, cut_log)
        assert _decoded(outcome.output) == "exec-2", figures
        # ... the run completed once, the step ran twice (its first call's answer lost)
        assert outcome.finished_events == 1, figures
        assert sorted(executions) == [1, 2], executions
        # what the cut-off node did: stopped leasing past its lease, resumed once
        # healed, and dropped its late answer
        assert stopped is not None, cut_log
        assert stopped - cut_at < STOP_WITHIN, cut_log
        assert resumed is not None, cut_log
        assert fenced is not None, cut_log


@pytest.mark.timeout(150)
def test_a_node_without_its_database_stops_leasing_and_resumes(tmp_path: Path) -> None:
    with _cluster(tmp_path, 1) as setup:
        run_id = _start(setup, 0)
        wait_until(lambda: _began(setup.app_log, 1), timeout=20, message="the step's first call")
        _, epoch = _holder(setup, run_id)
        time.sleep(0.3)
        cut_at = setup.nodes[0].cut()
        wait_until(
            lambda: _logged(setup.log(0), STOPPED, cut_at),
            timeout=STOP_WITHIN + 5,
            message=lambda: f"the node to stop leasing: {setup.log(0)}",
        )
        stopped = _logged(setup.log(0), STOPPED, cut_at)
        assert stopped is not None
        # nothing leased while cut off: the call is not called again before the heal
        time.sleep(max(0.0, cut_at + HEAL_AFTER - time.time()))
        assert _began(setup.app_log, 2) is None
        healed_at = setup.nodes[0].heal()
        wait_until(
            lambda: _logged(setup.log(0), RESUMED, healed_at),
            timeout=15,
            message=lambda: f"the node to resume: {_state(setup)}",
        )
        resumed = _logged(setup.log(0), RESUMED, healed_at)
        wait_until(
            lambda: _began(setup.app_log, 2),
            timeout=15,
            message=lambda: f"the call leased again, called again: {_state(setup)}",
        )
        again = _began(setup.app_log, 2)
        assert again is not None
        holder, new_epoch = _holder(setup, run_id)
        assert (holder, new_epoch) == (0, epoch + 1)
        first = _executions(setup.app_log)[1]
        assert again < first["begin"] + STEP_SECONDS, "the first call ended before the new lease"
        outcome = _completed(setup, run_id, timeout=40)
        time.sleep(1.0)
        outcome = _outcome(setup, run_id)
        executions = _executions(setup.app_log)
        log = setup.log(0)
        fenced = _logged(log, FENCED, healed_at)
        assert resumed is not None
        figures = {
            "lease_s": LEASE,
            "stopped_after_cut_s": round(stopped - cut_at, 2),
            "resumed_after_heal_s": round(resumed - healed_at, 2),
            "called_again_after_heal_s": round(again - healed_at, 2),
            "step_executions": len(executions),
            "runs_lost": int(outcome.status != "Completed"),
            "runs_completed_twice": int(outcome.finished_events > 1),
            "recorded": _decoded(outcome.step),
        }
        print(json.dumps({"database_lost": figures}))
        print("node's log:\n" + log)
        # the first call's answer came from the same owner as the call's lease now:
        # only its epoch fences it; the step's recorded value is the current call's
        assert _decoded(outcome.step) == "exec-2", (figures, log)
        assert _decoded(outcome.output) == "exec-2", figures
        assert outcome.finished_events == 1, figures
        assert sorted(executions) == [1, 2], executions
        assert stopped - cut_at < STOP_WITHIN, log
        assert fenced is not None, log
