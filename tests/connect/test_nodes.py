"""Connect on two engine nodes sharing one Postgres.

Two ``stepline start`` processes on one database (a schema of its own) and worker
processes connected to one node or to each; events go in through either node. Any node
may lease a call: a node with no worker of the app forwards it to a node that has one
(``/v0/connect/forward``, found through the presence table), so every run completes
wherever it was leased. Each test runs with both workers (``harness.KINDS``: the official
``inngest`` package's and Stepline's).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol import signing
from stepline.engine._connect.cluster import PRESENCE_SECONDS
from tests._support.databases import postgres_schema
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, log_tail, spawn, stop
from tests.apps.connect_official_worker import event

from .harness import APP_ID, KINDS, ROOT, TERMINAL, Kind, Workers, workers

pytestmark = [pytest.mark.process, pytest.mark.postgres, pytest.mark.timeout(180)]

KEY = "signkey-prod-" + "5a6b" * 16


@pytest.fixture(params=KINDS, ids=[kind.name for kind in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    """Each worker in turn."""
    found: Kind = request.param
    return found


class EngineNode:
    """A ``stepline start`` process and a REST client with its key."""

    def __init__(self, name: str, db: str, tmp: Path) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        command = engine_command(
            "start", "--port", str(self.port), "--db", db, "--signing-key", KEY,
            "--event-key", "test-key", "--retry-scale", "0", "--log-level", "debug",
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] = spawn(command, log=self.log, env=clean_env())
        auth = {"authorization": signing.bearer_token(KEY)}
        self.http = httpx.Client(base_url=self.url, headers=auth, timeout=30)

    def up(self) -> None:
        def answers() -> bool:
            assert self.proc.poll() is None, log_tail(self.log)
            with contextlib.suppress(httpx.TransportError):
                return self.http.get("/ready").status_code == 200
            return False

        wait_until(answers, timeout=60, message=lambda: f"node {self.name}:\n{log_tail(self.log)}")

    def get(self, path: str) -> Any:
        answer = self.http.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def send(self, name: str, data: dict[str, Any]) -> str:
        answer = self.http.post("/e/test-key", json={"name": event(name), "data": data})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["ids"][0])

    def finished(self, event_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            runs = self.get(f"/v1/events/{event_id}/runs")
            if not runs:
                return None
            run: dict[str, Any] = self.get(f"/v1/runs/{runs[0]['run_id']}")
            return run if run["status"] in TERMINAL else None

        def why() -> str:  # what this node was doing, for a run that did not end
            return f"the run of {event_id} to end on node {self.name}:\n{log_tail(self.log, 6000)}"

        return wait_until(ended, timeout=timeout, message=why)

    def serves(self, instance: str) -> bool:
        workers = self.get(f"/v1/apps/{APP_ID}/workers")
        return any(w["instance_id"] == instance and w["status"] == "ready" for w in workers)

    def forwarded(self) -> int:
        return log_tail(self.log, 10**7).count(f"forwarded a call of app {APP_ID}")

    def close(self) -> None:
        self.http.close()
        stop(self.proc)


@contextlib.contextmanager
def two_nodes(tmp: Path) -> Iterator[tuple[EngineNode, EngineNode]]:
    with postgres_schema("connect") as db:
        a = EngineNode("a", db, tmp)
        try:
            a.up()  # migrates the schema; then the second node
            b = EngineNode("b", db, tmp)
            try:
                b.up()
                yield a, b
            finally:
                b.close()
        finally:
            a.close()


def _connect(found: Workers, node: EngineNode, instance: str) -> None:
    found.spawn(node.url, instance, KEY)
    wait_until(
        lambda: node.serves(instance),
        timeout=30,
        message=lambda: f"worker {instance} on node {node.name}:\n{found.output(instance)}",
    )


def test_a_worker_on_one_node_serves_calls_leased_by_the_other(tmp_path: Path, kind: Kind) -> None:
    with two_nodes(tmp_path) as (a, b), workers(tmp_path, kind.module) as found:
        _connect(found, a, "s1")
        # b lists a's worker (asking a), and none of its own; a writes its presence just
        # after the worker is ready, so b may need a moment to see it
        [listed] = wait_until(
            lambda: b.get(f"/v1/apps/{APP_ID}/workers") or None,
            timeout=3 * PRESENCE_SECONDS,
            message=lambda: f"node b to list a's worker:\n{log_tail(b.log)}",
        )
        assert (listed["instance_id"], listed["status"]) == ("s1", "ready")
        # the record a gives for this app (the official worker serves two apps)
        assert listed in a.get(f"/v1/apps/{APP_ID}/workers")
        assert b.get(f"/v1/apps/{APP_ID}/workers?local=1") == []
        # events into b: runs and their calls are leased by either node; b has no worker
        sent = [b.send("steps", {"n": n}) for n in range(1, 9)]
        sent.append(b.send("sleep", {}))
        sent.append(b.send("slow", {"seconds": 1}))
        outputs = [b.finished(event_id)["output"] for event_id in sent]
        assert outputs == [n * 10 for n in range(1, 9)] + ["woke", "after"]
        assert set(found.ran("steps.one")) == {"s1"}
        assert len(found.ran("steps.one")) == 8, "each step body once"
        assert b.forwarded() > 0, "node b leased calls and forwarded them to a"
        assert a.forwarded() == 0, "a had the worker: it never forwarded"


def test_a_worker_on_each_node_and_events_through_both(tmp_path: Path, kind: Kind) -> None:
    with two_nodes(tmp_path) as (a, b), workers(tmp_path, kind.module) as found:
        _connect(found, a, "s1")
        _connect(found, b, "s2")
        sent = [(a if n % 2 else b).send("steps", {"n": n}) for n in range(1, 13)]
        sent.append(a.send("invoke", {}))
        sent.append(b.send("parallel", {}))
        runs = [a.finished(event_id) for event_id in sent]
        assert [r["status"] for r in runs] == ["Completed"] * 14
        assert [r["output"] for r in runs[:12]] == [n * 10 for n in range(1, 13)]
        assert (runs[12]["output"], runs[13]["output"]) == (42, [1, 2])
        assert len(found.ran("steps.one")) == 12, "each step body once"
        assert set(found.ran("steps.one")) <= {"s1", "s2"}
        assert a.forwarded() == b.forwarded() == 0, "each node had a worker of its own"
        for node in (a, b):  # each lists both, each with the node it is connected to
            listed = node.get("/v1/connect/workers")
            assert sorted(w["instance_id"] for w in listed) == ["s1", "s2"]
            assert len({w["node"] for w in listed}) == 2


def _held_worker(found: Workers, node: EngineNode, instance: str) -> subprocess.Popen[bytes]:
    """A worker process of ``found``'s module for ``node`` that has imported its SDK and
    connects once its stdin closes.

    A call waits a bounded time for a worker (the gateway's ``wait_worker``, 30 s); a
    process's start (the official SDK's imports) may take a good part of that on a loaded
    machine, so it happens before the call starts waiting.
    """
    with open(found.tmp / f"{instance}.out", "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, found.module, node.url, instance, str(found.log), KEY],
            cwd=ROOT,
            env=clean_env(WORKER_LOG_LEVEL="INFO"),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=out,
        )
    found.procs[instance] = proc
    try:
        wait_until(
            lambda: found._alive(instance) and "imported" in found.output(instance),
            timeout=60,
            message=lambda: f"worker {instance} to import its SDK:\n{found.output(instance)}",
        )
    except BaseException:
        _release(proc)
        raise
    return proc


def _release(proc: subprocess.Popen[bytes]) -> None:
    """Let a ``_held_worker`` connect."""
    if proc.stdin is not None:
        proc.stdin.close()


#: ``python -c HOLD MODULE ARGS...``: import MODULE, say so, run its ``main()`` (which reads
#: ARGS from ``sys.argv``) once stdin closes.
HOLD = """
import importlib, sys
main = importlib.import_module(sys.argv.pop(1)).main
print("imported", flush=True)
sys.stdin.read()
main()
"""


def test_a_dead_nodes_presence_is_skipped_and_calls_wait_for_a_worker(
    tmp_path: Path, kind: Kind
) -> None:
    with two_nodes(tmp_path) as (a, b), workers(tmp_path, kind.module) as found:
        _connect(found, a, "s1")
        assert b.finished(b.send("steps", {"n": 1}))["output"] == 10
        s2 = _held_worker(found, b, "s2")  # started, not connected: b still has no worker
        try:
            a.proc.kill()  # SIGKILL: its presence row stays until it is stale
            a.proc.wait(10)
            # a's port is held (bound, never listening) until the end: b's calls to it are
            # refused at once, as a dead node's are, and no port picked for another test's
            # server meanwhile can be it (one would take b's forwarded call and never answer)
            with socket.socket() as gone:
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                gone.bind(("127.0.0.1", a.port))
                found.signal("s1", signal.SIGKILL)
                found.procs["s1"].wait(10)
                event_id = b.send("steps", {"n": 2})  # b finds a's row, cannot reach it, waits
                wait_until(
                    lambda: "is unreachable" in log_tail(b.log, 10**7),
                    message=lambda: f"node b to try node a:\n{log_tail(b.log)}",
                )
                _release(s2)  # a worker for b: the waiting call goes to it
                wait_until(
                    lambda: found._alive("s2") and b.serves("s2"),
                    timeout=30,
                    message=lambda: f"worker s2 on node b:\n{found.output('s2')}",
                )
                run = b.finished(event_id)
        finally:
            _release(s2)
        assert (run["status"], run["output"]) == ("Completed", 20)
        assert found.ran("steps.one") == ["s1", "s2"]
        assert b.get(f"/v1/runs/{run['run_id']}/attempts") == [], "no attempt was spent"
