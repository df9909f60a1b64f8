"""A rolling deploy: three ``stepline start`` nodes behind haproxy, restarted one by one.

The nodes share one Postgres database; haproxy (Debian's, ``/usr/sbin/haproxy``) balances
over them and checks ``/ready`` every 300 ms. Under a steady load (events at
``POST /e/{key}``, run starts at ``POST /v1/functions/{id}/runs`` and reads at
``GET /v1/runs/{id}``, all through haproxy) each node in turn gets SIGTERM, exits and
starts again. On SIGTERM a node drains first (``/ready`` answers 503 while it still
serves, ``--drain-delay``), so haproxy moves traffic away before the listener closes.

Counted: every request answered 2xx; every acknowledged event and start made one run; every
run completed, once (one ``end`` in the app's trace, one ``inngest/function.finished``);
no step ran twice (the app, in a process of its own, traces each execution).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests._support.ci import unavailable
from tests._support.databases import postgres_database
from tests._support.polling import wait_until
from tests._support.processes import answers, free_port, log_tail, spawned
from tests.faults import drills

pytestmark = [pytest.mark.postgres, pytest.mark.process]

HAPROXY = "/usr/sbin/haproxy"
NODES = 3
#: the config the docs show (docs/production-postgres.md, "A rolling deploy") without its
#: retries on another node (so no failure is hidden by a retry: zero failed requests are
#: the drain's doing), with quicker checks so the drill stays short
CONFIG = """\
global
    maxconn 1000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend stepline
    bind 127.0.0.1:{port}
    default_backend engines

backend engines
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    timeout check 2s
    default-server inter 300ms fall 2 rise 2
{servers}
"""
#: a request every this many seconds, per kind of request
PACE = {"event": 0.05, "start": 0.15, "read": 0.1}


class Load:
    """Steady requests through the load balancer, each answer counted."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.sent: collections.Counter[str] = collections.Counter()
        self.failures: list[tuple[str, str]] = []
        self.events = 0
        self.starts: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(kind, act), name=f"load-{kind}")
            for kind, act in (("event", self._event), ("start", self._start), ("read", self._read))
        ]

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._done.set()
            for thread in self._threads:
                thread.join(30)

    def _loop(self, kind: str, act: Callable[[httpx.Client, int], httpx.Response | None]) -> None:
        with httpx.Client(base_url=self.base, timeout=20) as http:
            for n in itertools.count():
                if self._done.is_set():
                    return
                try:
                    answer = act(http, n)
                except httpx.HTTPError as exc:
                    self._count(kind, f"{type(exc).__name__}: {exc}")
                else:
                    if answer is not None:
                        ok = answer.is_success
                        self._count(kind, None if ok else f"{answer.status_code} {answer.text}")
                time.sleep(PACE[kind])

    def _count(self, kind: str, failure: str | None) -> None:
        with self._lock:
            self.sent[kind] += 1
            if failure is not None:
                self.failures.append((kind, failure))

    def _event(self, http: httpx.Client, n: int) -> httpx.Response:
        body = [{"name": "drill/go", "data": {"n": n}}]
        answer = http.post(f"/e/{drills.EVENT_KEY}", json=body)
        if answer.is_success:
            with self._lock:
                self.events += 1
        return answer

    def _start(self, http: httpx.Client, n: int) -> httpx.Response:
        body = {"data": {"n": n}, "idempotency_key": f"start-{n}"}
        answer = http.post("/v1/functions/steps-flow/runs", json=body, headers=drills.BEARER)
        if answer.is_success:
            with self._lock:
                self.starts.append(answer.json()["data"]["run_id"])
        return answer

    def _read(self, http: httpx.Client, n: int) -> httpx.Response | None:
        with self._lock:
            if not self.starts:
                return None
            run_id = random.choice(self.starts)
        answer = http.get(f"/v1/runs/{run_id}", headers=drills.BEARER)
        if answer.is_success and answer.json()["data"]["run_id"] != run_id:
            with self._lock:
                self.failures.append(("read", f"asked {run_id}, got {answer.text}"))
        return answer


@contextlib.contextmanager
def _haproxy(tmp_path: Path, ports: list[int]) -> Iterator[str]:
    """haproxy in front of nodes to come on ``ports``: its URL."""
    port = free_port()
    servers = "\n".join(f"    server e{i} 127.0.0.1:{p} check" for i, p in enumerate(ports))
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, servers=servers))
    base = f"http://127.0.0.1:{port}"
    command = [HAPROXY, "-f", str(config), "-db"]
    log = tmp_path / "haproxy.log"
    with spawned(command, log=log, up=f"{base}/health", ready=answers, what="haproxy"):
        yield base


def _drained(node: drills.Node) -> float:
    """The seconds the node's last stop drained before it closed its listener."""
    found = re.findall(r"drained in ([0-9.]+) s", node.log.read_text())
    assert found, log_tail(node.log)
    return float(found[-1])


@pytest.mark.timeout(240)  # a bound for a loaded machine; about a minute on a quiet one
def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_run(tmp_path: Path) -> None:
    if shutil.which(HAPROXY) is None:
        unavailable(f"haproxy at {HAPROXY} (Debian: apt-get install haproxy)")
    ports = [free_port() for _ in range(NODES)]
    with (
        postgres_database("roll") as db,
        _haproxy(tmp_path, ports) as lb,  # first: the app registers through it
        drills.app(tmp_path, lb) as (app_url, trace),
        contextlib.ExitStack() as stack,
    ):
        nodes = [drills.Node(f"e{i}", db, app_url, tmp_path, port=p) for i, p in enumerate(ports)]
        for node in nodes:
            stack.callback(node.close)
        nodes[0].start()  # the first migrates; the others find the schema migrated
        with concurrent.futures.ThreadPoolExecutor() as pool:
            list(pool.map(drills.Node.start, nodes[1:]))  # a failed start raises here
        load = Load(lb)
        stops: list[tuple[float, float]] = []  # (SIGTERM to exit, SIGTERM to listener closed)
        began = time.monotonic()
        with load.running():
            time.sleep(1.0)
            for node in nodes:
                seconds = node.terminate()
                stops.append((seconds, _drained(node)))
                node.start()
                time.sleep(1.0)  # haproxy sees it ready again (rise 2 at 300 ms)
        loaded = time.monotonic() - began
        runs = load.events + len(load.starts)

        def completed() -> bool:
            return drills.statuses(db).get("Completed", 0) >= runs

        wait_until(completed, timeout=30, message=lambda: f"{runs} runs: {drills.statuses(db)}")
        assert load.failures == [], load.failures[:10]
        assert drills.statuses(db) == {"Completed": runs}
        counts = trace.counts()
        ended = {run for run, step in counts if step == "end"}
        assert len(ended) == runs
        assert set(load.starts) <= ended
        assert trace.twice() == {}, "steps or ends ran twice"
        assert all(counts[(run, step)] == 1 for run in ended for step in ("s0", "s1"))
        finished = drills.finished_events(db)
        assert set(finished) == ended
        assert set(finished.values()) == {1}
        assert all(load.sent[kind] > 20 for kind in PACE), load.sent
    print(
        f"rolling restart of {NODES} nodes in {loaded:.1f} s: {dict(load.sent)} requests, "
        f"0 failed; {runs} runs completed once; per node, SIGTERM to exit / drained: "
        + ", ".join(f"{total:.2f} / {drained:.2f} s" for total, drained in stops)
    )
