"""Where one step-by-step step's time goes in the embedded engine: a cost breakdown.

``steps_bench.py`` says how many steps per second; this says what each one is made of.
It runs ``--runs`` sequential runs of the 10-step bench function, step by
step (one call and one commit per step, as DBOS commits each step), in one
``EmbeddedEngine`` on a SQLite file (``synchronous`` NORMAL and FULL) and, when it
answers, on Postgres, with timers wrapped around the engine's own functions:

* **serialise**: the engine building the call's request (``_request.execution``: the
  object handed to an app in this process, its state copied; over HTTP
  ``_request.built``, ``_request.encode``) and decoding the answer (``response.decode``);
* **SDK**: the app's handler (for a sync function ``CommHandler.call_in_process`` on the
  SDK's thread pool, else ``handle_pooled``) minus running the function: setting up the
  call's state, encoding the answer;
* **step code** (``_call_sync`` on the SDK's thread pool): the user's function with the
  SDK's replay of the memoised steps, the floor's "in-process call";
* **store work**: the engine's logic and SQL inside the transaction (the ``work`` given
  to ``atomic``); **commit**: the rest of the store's transaction on its thread (``BEGIN``,
  ``COMMIT``, the flush);
* **hand-offs**: ``atomic``'s wall time on the event loop minus its time on the store's
  thread, and ``handle_pooled``'s wall time minus ``handle_sync``'s (or, for an async
  handler, ``run_in_executor``'s minus the step code's): thread hops, queueing, waking
  the loop;
* **the rest**: the step's wall time minus all of the above (the worker's and the event
  loop's own work, and the run's start and result, spread over its steps). Work off the
  run's path can overlap it (the engine fans out a run's ``function.finished`` event while
  the next run's start commits on the client's thread); the parts then add up to more
  than the step, ``rest`` is 0 and ``overlap`` says by how much.

Each is a mean per step over the timed runs, in microseconds, with its share of the step.
The figures come with the timers' own cost (a few microseconds each): compare them, not
their sum, with ``steps_bench.py``.

Run: ``.venv/bin/python bench/step_cost.py [--runs 300] [--store sqlite|sqlite-full|postgres]
[--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _servers
import steps_bench

import stepline
from stepline._comm import handler as _handler
from stepline.embedded import EmbeddedEngine
from stepline.engine._driver import local as _local
from stepline.engine._store import postgres as _pg
from stepline.engine._store import sqlite as _lite
from stepline.engine._wire import request as _request
from stepline.engine._wire import response

PARTS = ("serialise", "sdk", "step code", "store work", "commit", "hand-offs", "rest")
STORES = ("sqlite", "sqlite-full", "postgres")


class Clock:
    """Nanoseconds accumulated per part, from any thread."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = {}
        self._lock = threading.Lock()
        self.on = False

    def add(self, part: str, ns: int) -> None:
        if self.on:
            with self._lock:
                self.ns[part] = self.ns.get(part, 0) + ns


@contextlib.contextmanager
def timers(clock: Clock) -> Iterator[None]:
    """Wrap the engine's and the SDK's functions with timers; unwrapped on exit."""
    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapped: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        patches.append((owner, name, original))
        setattr(owner, name, wrapped(original))

    def timed(part: str) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            @functools.wraps(original)
            def run(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    return original(*args, **kwargs)
                finally:
                    clock.add(part, time.perf_counter_ns() - start)

            return run

        return wrap

    def timed_async(part: str) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            @functools.wraps(original)
            async def run(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    return await original(*args, **kwargs)
                finally:
                    clock.add(part, time.perf_counter_ns() - start)

            return run

        return wrap

    def store_work(work: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``work`` with its time inside the transaction counted as store work."""
        return timed("store work")(work)  # type: ignore[no-any-return]

    def atomic(original: Any) -> Any:  # the work inside, and the wall time outside
        @functools.wraps(original)
        async def run(self: Any, work: Callable[[Any], Any], **how: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return await original(self, store_work(work), **how)
            finally:
                clock.add("atomic wall", time.perf_counter_ns() - start)

        return run

    def atomic_blocking(original: Any) -> Any:  # per-step checkpoints, on the SDK's thread
        @functools.wraps(original)
        def run(self: Any, work: Callable[[Any], Any]) -> Any:
            start = time.perf_counter_ns()
            try:
                return original(self, store_work(work))
            finally:
                clock.add("blocking wall", time.perf_counter_ns() - start)

        return run

    for part, owner, name in (
        ("serialise", _request, "built"),
        ("serialise", _request, "encode"),
        ("serialise", _request, "execution"),  # an in-process call's copy of the state
        ("serialise", response, "decode"),
        ("step code", _handler, "_call_sync"),
        ("store thread", _lite.SqliteStore, "_commit_group"),
        ("store thread", _pg.PostgresStore, "_transaction"),
    ):
        patch(owner, name, timed(part))
    # the engine calls an in-process app on the SDK's pool: a sync function's call there
    # as an object (call_in_process, on the thread); else through handle_pooled (a sync
    # function's whole call on the pool: handle_sync; an async one's on the loop: handle)
    patch(_handler.CommHandler, "handle_pooled", timed_async("sdk wall"))
    patch(_handler.CommHandler, "handle_sync", timed("sdk thread"))
    patch(_handler.CommHandler, "call_in_process", timed("sdk thread"))
    patch(_handler.CommHandler, "_perform_async", timed_async("perform wall"))
    patch(_handler.CommHandler, "_perform_sync", timed("perform wall"))
    patch(_local.LocalCheckpoints, "record_sync", timed("checkpoint wall"))
    patch(_lite.SqliteStore, "atomic", atomic)
    patch(_pg.PostgresStore, "atomic", atomic)
    patch(_lite.SqliteStore, "atomic_blocking", atomic_blocking)
    patch(_pg.PostgresStore, "atomic_blocking", atomic_blocking)
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def breakdown(clock: Clock, steps: int, wall_ns: int) -> dict[str, float]:
    """Microseconds per step for each of ``PARTS``, and the step's wall time."""
    ns = clock.ns
    store_thread, work = ns.get("store thread", 0), ns.get("store work", 0)
    perform, call = ns.get("perform wall", 0), ns.get("step code", 0)
    # the SDK's own time: on the pool when handle_sync ran there, else on the loop
    sdk_wall, sdk_thread = ns.get("sdk wall", 0), ns.get("sdk thread", 0)
    sdk_hop = max(0, sdk_wall - sdk_thread) if sdk_thread else 0
    # per-step checkpoints run inside the function's call, on its thread
    checkpoint, blocking = ns.get("checkpoint wall", 0), ns.get("blocking wall", 0)
    waits = ns.get("atomic wall", 0) + blocking
    parts = {
        "serialise": ns.get("serialise", 0) + max(0, checkpoint - blocking),
        "sdk": max(0, (sdk_thread or sdk_wall) - perform),
        "step code": max(0, call - checkpoint),
        "store work": work,
        "commit": max(0, store_thread - work),
        "hand-offs": max(0, waits - store_thread) + max(0, perform - call) + sdk_hop,
    }
    timed = sum(parts.values())
    parts["rest"] = max(0, wall_ns - timed)
    out = {part: parts[part] / steps / 1000 for part in PARTS}
    out["step"] = wall_ns / steps / 1000
    # work timed on two threads at once (the engine fanning out a run's finished event
    # while the client's next start commits on its own thread) adds up to more than the
    # wall time; by how much, so the parts minus it make the step
    out["overlap"] = max(0, timed - wall_ns) / steps / 1000
    return out


def measure(
    store: str, runs: int, warmup: int, tmp: Path, inflight: int = 1, mode: str = "step"
) -> dict[str, float]:
    """One store: ``runs`` timed runs of 10 steps, ``inflight`` at a time; ``mode`` step
    (one call per step) or perstep (one call, each step committed before the next).

    With several in flight the parts are summed over the runs, so they add up to more
    than the wall time: read them per step against the sequential figures (what grows
    is where the runs wait for each other)."""
    with _servers.database(store == "postgres", tmp, f"cost_{store.replace('-', '_')}") as db:
        option = _servers.client_checkpointing(mode)
        client = stepline.Client(
            _servers.APP_ID, is_production=False, checkpointing=option, environ={}
        )
        fn = _servers.ten_steps(client)
        synchronous = "FULL" if store == "sqlite-full" else "NORMAL"
        engine = EmbeddedEngine(
            client, [fn], database=db, checkpointing=mode != "step", sqlite_synchronous=synchronous
        )
        engine.start()
        clock = Clock()
        try:
            with timers(clock):
                for k in range(warmup):
                    client.start_sync(fn, {"k": k}).result(timeout=60)
                clock.on = True
                start = time.perf_counter_ns()
                steps_bench.drive(
                    lambda k: client.start_sync(fn, {"k": k}).result(timeout=60),
                    0,
                    runs,
                    inflight,
                )
                wall = (time.perf_counter_ns() - start) * inflight
                clock.on = False
        finally:
            engine.stop()
            client.close()
    return {**breakdown(clock, runs * _servers.STEPS, wall), "inflight": inflight}


def report(results: dict[str, dict[str, float]], mode: str = "step") -> str:
    stores = list(results)
    what = "step-by-step step" if mode == "step" else "step, per-step checkpoints,"
    lines = [
        f"per {what} embedded engine: mean microseconds (share); with runs in "
        "flight, summed over them",
        f"{'':14}" + "".join(f"{s:>22}" for s in stores),
    ]
    overlapped = any(results[s].get("overlap", 0) for s in stores)
    for part in (*PARTS, *(("overlap",) if overlapped else ()), "step"):
        cells = []
        for s in stores:
            r = results[s]
            value = -r[part] if part == "overlap" else r[part]  # timed twice: taken off
            share = "" if part == "step" else f" ({value / r['step'] * 100:4.1f}%)"
            cells.append(f"{value:>13,.0f}{share:>9}")
        lines.append(f"{part:14}" + "".join(cells))
    lines.append(
        "steps/s (timers on)"
        + "".join(f"{1e6 * results[s]['inflight'] / results[s]['step']:>17,.0f}" for s in stores)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="timed runs per store")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--store", choices=STORES, action="append", help="(default: all)")
    parser.add_argument("--inflight", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument(
        "--mode",
        choices=("step", "perstep"),
        default="step",
        help="step: one call per step (default); perstep: Checkpointing(buffered_steps=1)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    stores = args.store or [s for s in STORES if s != "postgres" or _postgres_answers()]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="stepline-cost-") as tmp:
        for store in stores:
            print(f"step cost: {store}, {args.runs} runs...", file=sys.stderr, flush=True)
            results[store] = measure(
                store, args.runs, args.warmup, Path(tmp), args.inflight, args.mode
            )
    print(json.dumps(results, indent=2) if args.json else report(results, args.mode))
    return 0


def _postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(_servers.POSTGRES_URL, connect_timeout=3):
            return True
    except Exception:
        print("step cost: no Postgres answers, skipped", file=sys.stderr)
        return False


if __name__ == "__main__":
    raise SystemExit(main())
