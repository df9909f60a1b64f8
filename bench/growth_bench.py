"""Costs that grow with the work: many sleeping runs, many active runs, a wide fan-out, a long run.

Each measured on a SQLite file on disk and on Postgres (a fresh schema on
``STEPLINE_BENCH_POSTGRES_URL``, else ``STEPLINE_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``; skipped, and said so, when none answers),
with the engine embedded in this process (``EmbeddedEngine``):

* ``sleep``: ``--sleepers`` sleeping runs (default 100,000), filled in bulk as copies of
  one run the engine put to sleep (``_sleep_fill``); the database's size, the engine's
  start time and this process's RSS with them all asleep; then their wake jobs are moved
  to come due evenly within 60 seconds a few seconds after a fresh start (``--waking N``:
  only the first N of them, the others a day later), and the real engine wakes them: how
  late each run's next step ran (actual minus due time, p50/p99/max), the wakes per
  second and the peak RSS.
* ``active``: N runs stepping at once (N from 100 to 10,000), step by step (one call a
  step): the steps/s while all N step, the event to first step of the N runs' own burst
  (p50/p99), and that of a probe run started by an event sent every 100 ms while they
  step (p50/p99).
* ``fanout``: one run invoking W children in a ``parallel`` group and waiting for all
  (W = 10, 100, 1,000): the time from its start to its result, and to each child's step.
* ``long``: one run of 10,000 steps, step by step and checkpointed: the time per step
  at the start and at the end (the interval between consecutive steps' first execution).

Each figure carries the load average when it was measured. ``--json`` prints everything
(``growth_plots.py`` turns it into the PNGs in ``bench/img/``).

Run: ``.venv/bin/python bench/growth_bench.py [--part sleep|active|fanout|long]
[--store sqlite|postgres] [--sleepers 100000] [--waking N] [--quick | --smoke] [--json]``
"""

from __future__ import annotations

import argparse
import array
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _servers
import _sleep_fill

import stepline
from stepline.embedded import EmbeddedEngine

APP = "growth"
PARTS = ("sleep", "active", "fanout", "long")
PROBE_EVERY = 0.1  # s between probe events while the active runs step


@dataclass(frozen=True)
class Sizes:
    sleepers: tuple[int, ...]
    window: float  # s over which the sleepers come due
    waking: int | None  # how many of them come due in it (None: all)
    active: tuple[int, ...]
    active_seconds: float  # the steps/s window once all N step
    widths: tuple[int, ...]
    long_steps: int
    idle: float = 3.0  # s the engine idles with every run asleep
    #: s from now to the first due time after the next start: at least ``lead_min``, and
    #: ``lead_margin`` more than twice the last start took
    lead_min: float = 5.0
    lead_margin: float = 3.0


FULL = Sizes((100_000,), 60.0, None, (100, 300, 1000, 3000, 10_000), 10.0, (10, 100, 1000), 10_000)
QUICK = Sizes((2000,), 5.0, None, (10, 50), 1.0, (5, 20), 200)
#: the test suite's smoke run: every part's code once per store, the least time spent
#: (100 long steps: ``per_step_ms`` still holds 99 intervals)
SMOKE = Sizes((100,), 1.0, None, (5,), 0.3, (3,), 100, idle=0.2, lead_min=1.0, lead_margin=0.5)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def say(text: str) -> None:
    print(f"growth: {text}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else math.nan


def proc_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Start ``VmHWM`` over at the current RSS (Linux: ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def wait_for(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            sys.exit(f"growth_bench: {what}: not done after {timeout:.0f} s")
        time.sleep(0.02)


class Marks:
    """When each numbered thing first happened (``time.time()``; NaN: not yet)."""

    def __init__(self, count: int) -> None:
        self.at = array.array("d", [math.nan]) * count
        self.count = 0
        self.lock = threading.Lock()

    def mark(self, i: int) -> bool:
        with self.lock:
            if math.isnan(self.at[i]):
                self.at[i] = time.time()
                self.count += 1
        return True

    @property
    def full(self) -> bool:
        return self.count >= len(self.at)


class State:
    """What the bench functions write to; replaced before each measurement."""

    def __init__(self) -> None:
        self.woke = Marks(0)
        self.first = Marks(0)
        self.probes = Marks(0)
        self.children = Marks(0)
        self.long = Marks(0)
        #: per step of the long run: ms from its call's start of the function body (the
        #: replay of the steps before it) to the step itself
        self.replayed = array.array("d")
        self.entered = 0.0
        self.done = Marks(0)
        self.steps = 0
        self.stop = False


STATE = State()


def payload(ctx: stepline.SyncContext) -> dict[str, Any]:
    """The trigger event's data (the bench sends plain JSON objects)."""
    data: Any = ctx.event.data
    return dict(data)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="sleeper", trigger=stepline.TriggerEvent(event="growth/sleep"), retries=0)
    def sleeper(ctx: stepline.SyncContext) -> object:
        due = float(payload(ctx)["due"])
        ctx.step.sleep_until("nap", dt.datetime.fromtimestamp(due, dt.timezone.utc))
        return ctx.step.run("woke", lambda: STATE.woke.mark(int(payload(ctx)["i"])))

    def tick() -> bool:
        STATE.steps += 1  # under the GIL; read as a rate, a lost increment is noise
        return not STATE.stop

    @client.function(id="active", trigger=stepline.TriggerEvent(event="growth/active"), retries=0)
    def active(ctx: stepline.SyncContext) -> object:
        k = int(payload(ctx)["k"])
        ctx.step.run("first", lambda: STATE.first.mark(k))
        i = 0
        while ctx.step.run(f"s{i}", tick):  # each step says whether to go on
            i += 1
        STATE.done.mark(k)
        return i

    @client.function(id="probe", trigger=stepline.TriggerEvent(event="growth/probe"), retries=0)
    def probe(ctx: stepline.SyncContext) -> object:
        return ctx.step.run("first", lambda: STATE.probes.mark(int(payload(ctx)["p"])))

    @client.function(id="child", trigger=stepline.TriggerEvent(event="growth/never"), retries=0)
    def child(ctx: stepline.SyncContext) -> object:
        j = int(payload(ctx)["j"])
        ctx.step.run("first", lambda: STATE.children.mark(j))
        return j

    @client.function(id="fan", trigger=stepline.TriggerEvent(event="growth/fan"), retries=0)
    def fan(ctx: stepline.SyncContext) -> object:
        width = int(payload(ctx)["w"])
        calls = [
            (lambda j=j: ctx.step.invoke(f"c{j}", function=child, data={"j": j}))
            for j in range(width)
        ]
        return sum(int(x) for x in ctx.step.parallel(calls))

    @client.function(id="long", trigger=stepline.TriggerEvent(event="growth/long"), retries=0)
    def long(ctx: stepline.SyncContext) -> object:
        n = int(payload(ctx)["n"])
        STATE.entered = time.perf_counter()
        for i in range(n):
            ctx.step.run(f"s{i}", lambda i=i: long_step(i))
        return n

    def long_step(i: int) -> bool:
        STATE.replayed[i] = 1000 * (time.perf_counter() - STATE.entered)
        return STATE.long.mark(i)

    return [sleeper, active, probe, child, fan, long]


@contextlib.contextmanager
def engine(db: str, *, checkpointing: bool = True) -> Iterator[tuple[stepline.Client, float]]:
    """An embedded engine on ``db`` with the bench's functions; the seconds ``start`` took."""
    client = stepline.Client(APP, is_production=False, checkpointing=checkpointing, environ={})
    embedded = EmbeddedEngine(client, functions(client), database=db, checkpointing=checkpointing)
    began = time.perf_counter()
    embedded.start(timeout=600)
    started = time.perf_counter() - began
    try:
        yield client, started
    finally:
        embedded.stop()
        client.close()


# -- sleeping runs -----------------------------------------------------------------------------


def sleeping(db: str, count: int, sizes: Sizes, label: str) -> dict[str, Any]:
    say(f"{label}: one run put to sleep by the engine, the template")
    with engine(db) as (client, _):
        client.send_sync(
            stepline.Event(name="growth/sleep", data={"i": 0, "due": time.time() + 9e5})
        )
        wait_for(lambda: _sleep_fill.counts(db)["wake_jobs"] == 1, 30, "the template's sleep")
    template = _sleep_fill.template(db)
    far = time.time() + 86_400.0  # a day ahead while the engine starts with them asleep
    # the first ``waking`` come due within the window, the others a day after it
    waking = min(count, sizes.waking or count)
    dues = [
        far + sizes.window * i / waking if i < waking else far + 86_400.0 + i / count
        for i in range(count)
    ]
    # in a child process: this one's RSS is then the engine's and the bench's, not the fill's
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as child:
        fill = child.submit(
            _sleep_fill.fill, db, template, dues, time.time(), f"{label} fill"
        ).result()
    if fill["counts"] != {
        "running": count,
        "sleeping_steps": count,
        "wake_jobs": count,
        "jobs": count,
    }:
        sys.exit(f"growth_bench: after the fill {fill['counts']}, want {count} of each")
    out: dict[str, Any] = {
        "sleepers": count,
        "waking": waking,
        "fill": fill,
        "db_bytes": _sleep_fill.size(db),
    }
    rss0 = proc_kib("VmRSS")
    reset_peak()
    out["load_asleep"] = load()
    with engine(db) as (_, started):
        time.sleep(sizes.idle)  # idle: nothing due
        out["start_s_asleep"] = started
        out["rss_kib_before"] = rss0
        out["rss_kib_asleep"] = proc_kib("VmRSS")
        out["rss_peak_kib_asleep"] = proc_kib("VmHWM")
    # due from a few seconds after the next start (as long again as this one took)
    first_due = time.time() + max(sizes.lead_min, 2 * started + sizes.lead_margin)
    by = first_due - far
    _sleep_fill.shift(db, by, before=far + sizes.window + 1)
    due = array.array("d", (d + by for d in dues[:waking]))
    STATE.woke = Marks(waking)
    reset_peak()
    out["load_waking"] = load()
    timeline: list[tuple[float, int, int]] = []
    with engine(db) as (_, started):
        out["start_s_due"] = started
        limit = sizes.window + 30 + waking / 100  # at 100 wakes/s, a failure
        deadline, shown = time.monotonic() + limit, 0.0
        while not STATE.woke.full:
            if time.monotonic() > deadline:
                sys.exit(f"growth_bench: {STATE.woke.count:,} of {waking:,} woke in {limit:.0f} s")
            time.sleep(0.25)
            t = time.time() - first_due
            timeline.append((round(t, 2), STATE.woke.count, proc_kib("VmRSS")))
            if time.monotonic() - shown >= 5:
                shown = time.monotonic()
                say(f"{label}: {STATE.woke.count:,}/{waking:,} woke, t={t:.0f} s")
        out["rss_peak_kib_waking"] = proc_kib("VmHWM")
    late = [a - d for a, d in zip(STATE.woke.at, due, strict=True)]
    out.update(
        late_p50_s=statistics.median(late),
        late_p99_s=pct(late, 0.99),
        late_max_s=max(late),
        wakes_per_s=waking / max(max(STATE.woke.at) - min(STATE.woke.at), 1e-9),
        load_end=load(),
        timeline=timeline[:: max(1, len(timeline) // 400)],
        # lateness by due time: 50 slices of the window, the p50 and p99 of each
        late_by_due=sliced(late, 50),
    )
    return out


def sliced(values: list[float], parts: int) -> list[tuple[float, float]]:
    """(p50, p99) of each of ``parts`` consecutive slices of ``values``."""
    step = max(1, len(values) // parts)
    return [
        (statistics.median(values[i : i + step]), pct(values[i : i + step], 0.99))
        for i in range(0, len(values) - step + 1, step)
    ]


# -- active runs -------------------------------------------------------------------------------


def active(db: str, count: int, sizes: Sizes, label: str) -> dict[str, Any]:
    STATE.first, STATE.done, STATE.stop, STATE.steps = Marks(count), Marks(count), False, 0
    probes = int(sizes.active_seconds / PROBE_EVERY)
    STATE.probes = Marks(probes)
    sent = array.array("d", [math.nan]) * count
    with engine(db, checkpointing=False) as (client, _):
        out: dict[str, Any] = {"runs": count, "load_start": load()}
        for lo in range(0, count, 500):
            events = [
                stepline.Event(name="growth/active", data={"k": k})
                for k in range(lo, min(count, lo + 500))
            ]
            now = time.time()
            client.send_sync(events)
            for k in range(lo, lo + len(events)):
                sent[k] = now
        wait_for(lambda: STATE.first.full, 60 + count / 20, f"{label}: {count} first steps")
        burst = [a - s for a, s in zip(STATE.first.at, sent, strict=True)]
        out["burst_first_p50_ms"] = 1000 * statistics.median(burst)
        out["burst_first_p99_ms"] = 1000 * pct(burst, 0.99)
        say(f"{label}: {count} runs stepping, {sizes.active_seconds:.0f} s of probes")
        probe_sent = []
        steps0, began = STATE.steps, time.perf_counter()
        for p in range(probes):
            probe_sent.append(time.time())
            client.send_sync(stepline.Event(name="growth/probe", data={"p": p}))
            time.sleep(max(0.0, began + (p + 1) * PROBE_EVERY - time.perf_counter()))
        seconds = time.perf_counter() - began
        out["steps_per_s"] = (STATE.steps - steps0) / seconds
        out["load_window"] = load()
        wait_for(lambda: STATE.probes.full, 120, f"{label}: the probes' first steps")
        lat = [a - s for a, s in zip(STATE.probes.at, probe_sent, strict=True)]
        out["probe_first_p50_ms"] = 1000 * statistics.median(lat)
        out["probe_first_p99_ms"] = 1000 * pct(lat, 0.99)
        STATE.stop = True
        wait_for(lambda: STATE.done.full, 120 + count / 20, f"{label}: {count} runs ending")
    return out


# -- fan-out and a long run ----------------------------------------------------------------------


def fanout(db: str, width: int) -> dict[str, Any]:
    STATE.children = Marks(width)
    with engine(db) as (client, _):
        out: dict[str, Any] = {"width": width, "load_start": load()}
        began = time.time()
        total = client.execute_sync("fan", {"w": width}, timeout=1800)
        ended = time.time()
    if total != width * (width - 1) // 2:
        sys.exit(f"growth_bench: fan-out of {width} returned {total}")
    firsts = [a - began for a in STATE.children.at]
    out.update(
        seconds=ended - began,
        ms_per_child=1000 * (ended - began) / width,
        child_first_p50_s=statistics.median(firsts),
        child_first_max_s=max(firsts),
        load_end=load(),
    )
    return out


def long_run(db: str, steps: int, checkpointing: bool) -> dict[str, Any]:
    STATE.long = Marks(steps)
    STATE.replayed = array.array("d", [math.nan]) * steps
    with engine(db, checkpointing=checkpointing) as (client, _):
        out: dict[str, Any] = {
            "steps": steps,
            "mode": "checkpointed" if checkpointing else "step-by-step",
            "load_start": load(),
        }
        began = time.perf_counter()
        client.execute_sync("long", {"n": steps}, timeout=3600)
        out["seconds"] = time.perf_counter() - began
    at = list(STATE.long.at)
    gaps = [1000 * (b - a) for a, b in itertools.pairwise(at)]
    edge = max(1, min(100, len(gaps) // 10))
    out.update(
        first_ms=statistics.median(gaps[:edge]),
        last_ms=statistics.median(gaps[-edge:]),
        # ms per step by slices of the run: the mean interval of each hundredth
        per_step_ms=hundredths(gaps),
        replay_ms=hundredths(list(STATE.replayed)[1:]),
        replay_last_ms=statistics.median(list(STATE.replayed)[-edge:]),
        load_end=load(),
    )
    out["ratio"] = out["last_ms"] / out["first_ms"]
    return out


def hundredths(values: list[float]) -> list[float]:
    """The mean of each hundredth of ``values``, in order."""
    size = max(1, len(values) // 100)
    return [statistics.fmean(values[i : i + size]) for i in range(0, len(values), size)]


# -- one store -----------------------------------------------------------------------------------


def one_store(store: str, parts: list[str], sizes: Sizes, tmp: Path) -> dict[str, Any]:
    pg = store == "postgres"
    result: dict[str, Any] = {}

    def fresh(name: str) -> contextlib.AbstractContextManager[str]:
        return _servers.database(pg, tmp, name)

    if "sleep" in parts:
        result["sleep"] = []
        for count in sizes.sleepers:
            with fresh("growth_sleep") as db:
                result["sleep"].append(sleeping(db, count, sizes, f"{store} {count:,} sleeping"))
    if "active" in parts:
        result["active"] = []
        for count in sizes.active:
            with fresh("growth_active") as db:
                say(f"{store}: {count} active runs")
                result["active"].append(active(db, count, sizes, f"{store} active"))
    if "fanout" in parts:
        result["fanout"] = []
        for width in sizes.widths:
            with fresh("growth_fan") as db:
                say(f"{store}: fan-out of {width}")
                result["fanout"].append(fanout(db, width))
    if "long" in parts:
        result["long"] = []
        for checkpointing in (False, True):
            with fresh("growth_long") as db:
                say(f"{store}: a run of {sizes.long_steps} steps, checkpointing={checkpointing}")
                result["long"].append(long_run(db, sizes.long_steps, checkpointing))
    return result


# -- report --------------------------------------------------------------------------------------


def report(data: dict[str, Any]) -> str:
    lines = [
        f"growth: costs that grow with the work, {data['cpus']} CPUs, load average "
        f"{data['loadavg']} at start, {data['loadavg_end']} at the end (python "
        f"{data['versions']['python']})" + (" QUICK: smoke sizes" if data["quick"] else "")
    ]
    for store, s in data["stores"].items():
        if "skipped" in s:
            lines.append(f"{store}: skipped, {s['skipped']}")
            continue
        for x in s.get("sleep", []):
            lines.append(
                f"{store} {x['sleepers']:,} sleeping ({x.get('waking', x['sleepers']):,} due): db "
                f"{x['db_bytes'] / 2**20:,.0f} MiB, "
                f"start {x['start_s_asleep']:.2f} s asleep / {x['start_s_due']:.2f} s due, RSS "
                f"{x['rss_kib_before'] / 1024:.0f} -> {x['rss_kib_asleep'] / 1024:.0f} MiB asleep, "
                f"peak {x['rss_peak_kib_waking'] / 1024:.0f} MiB waking; late p50 "
                f"{x['late_p50_s']:.2f} s, p99 {x['late_p99_s']:.2f} s, "
                f"max {x['late_max_s']:.2f} s; "
                f"{x['wakes_per_s']:,.0f} wakes/s (load {x['load_waking']} -> {x['load_end']})"
            )
        for x in s.get("active", []):
            lines.append(
                f"{store} {x['runs']:>6,} active: {x['steps_per_s']:,.0f} steps/s; burst "
                f"first step p50/p99 {x['burst_first_p50_ms']:.0f}/{x['burst_first_p99_ms']:.0f} "
                f"ms; probe event->first step p50/p99 {x['probe_first_p50_ms']:.1f}/"
                f"{x['probe_first_p99_ms']:.1f} ms (load {x['load_window']})"
            )
        for x in s.get("fanout", []):
            lines.append(
                f"{store} fan-out {x['width']:>5,}: {x['seconds']:.2f} s, "
                f"{x['ms_per_child']:.2f} ms/child; children's first step p50 "
                f"{x['child_first_p50_s']:.2f} s, last {x['child_first_max_s']:.2f} s "
                f"(load {x['load_end']})"
            )
        for x in s.get("long", []):
            lines.append(
                f"{store} {x['steps']:,} steps {x['mode']}: {x['seconds']:.1f} s; per step "
                f"{x['first_ms']:.3f} ms first, {x['last_ms']:.3f} ms last ({x['ratio']:.2f}x; "
                f"of it the function's replay {x['replay_last_ms']:.3f} ms) "
                f"(load {x['load_end']})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, action="append", help="(default all)")
    parser.add_argument("--store", choices=("sqlite", "postgres"), action="append")
    parser.add_argument("--sleepers", type=int, action="append", help="(default 100000)")
    parser.add_argument(
        "--waking", type=int, help="how many sleepers come due in the window (default all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (bench/all.py --quick)")
    parser.add_argument("--smoke", action="store_true", help="the least sizes (the test suite)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.sleepers or args.waking:
        sizes = dataclasses.replace(
            sizes, sleepers=tuple(args.sleepers or sizes.sleepers), waking=args.waking
        )
    data: dict[str, Any] = {
        "benchmark": "growth: costs that grow with the work",
        "quick": args.quick or args.smoke,
        "sizes": sizes.__dict__,
        "cpus": os.cpu_count(),
        "loadavg": load(),
        "versions": {"python": platform.python_version(), "stepline": stepline.__version__},
        "stores": {},
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="growth-") as tmp:
        for store in args.store or ["sqlite", "postgres"]:
            problem = _servers.postgres_problem() if store == "postgres" else None
            if problem:
                say(f"postgres skipped, {problem}")
                data["stores"][store] = {"skipped": problem}
                continue
            data["stores"][store] = one_store(store, args.part or list(PARTS), sizes, Path(tmp))
    data["seconds"] = time.monotonic() - began
    data["loadavg_end"] = load()
    print(json.dumps(data, indent=1) if args.json else report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
