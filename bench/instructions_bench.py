"""Instructions per step under callgrind, and Python calls per step: figures that do not
move with the VM's speed.

The VM's speed moves by a third within an hour, so a 5% change in steps/s is lost in the
noise. The number of instructions the CPU executes for a step is not: this runs a fixed
workload for each mode the step benchmarks time, under ``valgrind --tool=callgrind``,
and reports the instructions (``Ir``) per step, with the C functions they are spent in;
and the same workload under ``cProfile`` (every thread), for the Python calls per step
and the Python functions they are made of.

Modes (the bench function of ``steps_bench.py``, ten trivial steps a run, runs one after
another, SQLite ``synchronous=NORMAL``; its set-up code is reused, not copied):

* ``embedded-step``, ``embedded-checkpoint``, ``embedded-perstep``: an
  ``EmbeddedEngine`` in this process (``steps_bench.embedded``), step-by-step (one call
  per step), checkpointed, and per-step checkpointed; unit: a step.
* ``http-step``, ``http-checkpoint``: the engine's API (as ``stepline dev`` builds it) and
  the app (``stepline.asgi.serve``) under uvicorn on two threads of this process, the
  driver's ``execute_sync`` on a third, all over loopback HTTP (``steps_bench.py`` runs
  them as three processes; one process keeps every instruction and every call in one
  count); unit: a step.
* ``endpoint``: ``POST /three`` on ``endpoint_bench.py``'s FastAPI app (a durable route
  of three steps on an embedded engine) under uvicorn on a thread, one keep-alive
  ``httpx`` connection; unit: a request. ``endpoint-plain``: the same app's ``POST
  /plain`` (no steps), so that what durability adds is the difference.

Each mode is set up, warms up with ``--warmup`` units (first-use imports and caches, and
the interpreter's specialising of code that has run eight times), then runs ``--segments``
segments of ``--runs`` units each (runs of ten steps; requests for the endpoint). A
marker between segments (``os.getpgrp()``, which nothing else calls) makes callgrind
dump its counts (``--dump-before=getpgrp``), so each segment's instructions are counted
alone: the interpreter's start, the imports, the set-up and the warm-up fall in dumps
that are discarded, with no subtraction of two workload sizes. The profile run takes a
snapshot of every thread's ``cProfile`` at the same markers.

Callgrind runs the program about 50x slower, while every clock in it keeps real time:
whatever the code does by the clock rather than by the step would weigh 50x what it does
at full speed, and move with the machine's load. So, in both runs: the engine's timers
(the worker's idle poll, the schema check, dev mode's app poll) are set to an hour
(``QUIET``), uvicorn does not wake ten times a second (``quiet_server``), a pool thread
goes on with a run's calls for a minute rather than 50 ms before handing back to the
loop (``onthread.SLICE``), under callgrind a thread waits 5 s rather than 5 ms for the
GIL before asking for it, and the heap left by the imports and the warm-up is frozen
(``gc.freeze()``), so that a full collection falling in a segment or not does not move it
by several percent.
What still varies is how the engine's threads meet (a commit that finds another queued
joins its group, a result that finds its waiter already waiting): the report gives each
mode's spread over its segments, (max - min) / mean. It is about 1% on a quiet machine;
on a loaded one (others' test suites) counts rise by up to 5%: compare figures taken on a
quiet machine, and the Python calls, which move by 0.1%.

Reported per mode: Ir per unit (the mean of the segments) and per step, the segments'
spread, Python and builtin calls per unit; the top C functions of the first segment by
self Ir and by inclusive Ir (of the functions that do not call back into Python code),
per unit; the top Python functions by self time and by calls per unit, and the top
functions and builtins by calls (self time, from the profile run, is as noisy as any
timing: the calls are the stable figure). ``--keep
DIR`` keeps each segment's callgrind dump (``MODE.SEGMENT.callgrind``), for ``kcachegrind``.

Needs valgrind (``apt-get install -y valgrind``). ``PYTHONHASHSEED=0`` for both runs.

Run: ``.venv/bin/python bench/instructions_bench.py [--modes embedded-step,http-step]
[--runs 5] [--segments 3] [--warmup 10] [--top 10] [--keep DIR] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
INSTALL = "apt-get install -y valgrind"
#: the C function whose entry makes callgrind dump its counts: ``os.getpgrp()`` calls it
MARKER = "getpgrp"
ANSWER = {"c": 3}
#: How long a server may take to start: under callgrind an engine's start (its schema
#: made, its loops begun) runs some fifty times slower than natively.
START = 600.0


@dataclass(frozen=True)
class Mode:
    label: str
    unit: str  # what --runs counts: "run" (of ten steps) or "request"
    steps: int  # steps per unit


MODES = {
    "embedded-step": Mode("embedded step-by-step", "run", 10),
    "embedded-checkpoint": Mode("embedded checkpointed", "run", 10),
    "embedded-perstep": Mode("embedded per-step checkpointed", "run", 10),
    "http-step": Mode("http step-by-step", "run", 10),
    "http-checkpoint": Mode("http checkpointed", "run", 10),
    "endpoint": Mode("endpoint request, 3 steps", "request", 3),
    "endpoint-plain": Mode("endpoint plain route, no steps", "request", 0),
}
#: the engine's timers, out of the count: their work is per second, not per step, and
#: under callgrind's ~50x slowdown a second holds 50x fewer steps, so it would weigh 50x
#: what it does at full speed, and move with the machine's load (the worker's idle poll,
#: the schema check, dev mode's poll of known apps)
QUIET = {"poll_interval": 3600.0, "schema_check_interval": 3600.0, "app_poll_interval": 3600.0}
#: seconds a thread waits for the GIL before it asks the holder to let go, under
#: callgrind: the default 5 ms is ~50x more work at full speed than under callgrind, where
#: forced hand-offs would come 50x as often and as the machine's load has it; with this,
#: threads hand over the GIL when they block, as they do at full speed within 5 ms
SWITCH_INTERVAL = 5.0
#: seconds a pool thread goes on with a run's calls before it hands back to the engine's
#: loop (``onthread.SLICE``, 50 ms): at full speed a sequential run of ten steps ends well
#: within it; under callgrind 50 ms is two or three steps, and how many depends on the
#: machine's load, so the hand-backs would come at every few steps, as the load has it
SLICE = 60.0


# -- the workload (a child process: under callgrind, or profiled) -----------------------------


def quiet_server(config: Any) -> Any:
    """A ``uvicorn.Server`` without its tick: uvicorn wakes ten times a second to look
    for ``should_exit`` (and to refresh its ``date`` header), work per second rather than
    per request (see ``QUIET``); this one wakes when ``should_exit`` is set, from any
    thread, and dates its answers once."""
    import asyncio

    import uvicorn

    class Quiet(uvicorn.Server):
        _exit = False
        _wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

        @property  # type: ignore[override]
        def should_exit(self) -> bool:
            return self._exit

        @should_exit.setter
        def should_exit(self, value: bool) -> None:
            self._exit = value
            if value and self._wake is not None:
                loop, wake = self._wake
                loop.call_soon_threadsafe(wake.set)

        async def main_loop(self) -> None:
            self._wake = (asyncio.get_running_loop(), asyncio.Event())
            await self.on_tick(0)
            while not self._exit:
                await self._wake[1].wait()

    return Quiet(config)


@contextlib.contextmanager
def workload(name: str, tmp: Path) -> Iterator[Callable[[int], None]]:
    """Set up mode ``name``; yield ``one(k)``, which runs one unit and checks its answer."""
    import _servers
    import steps_bench

    transport, _, kind = name.partition("-")
    if transport == "embedded":
        with steps_bench.embedded(kind, tmp / f"{name}.db", start_timeout=600, **QUIET) as start:

            def run(k: int) -> None:
                if start(k) != k:
                    sys.exit(f"instructions_bench: {name}: run {k} gave the wrong output")

            yield run
    elif transport == "http":
        db = tmp / f"{name}.db"
        _servers.remove_db(db)
        port = _servers.free_port()
        url = f"http://127.0.0.1:{port}"
        api = _servers.engine_app(port, str(db), checkpointing=kind != "step", **QUIET)
        with (
            _servers.ServerThread(
                api, "engine", port=port, server=quiet_server, start_seconds=START
            ),
            _servers.ServerThread(
                _servers.app_asgi(url, kind), "app", server=quiet_server, start_seconds=START
            ) as app,
        ):
            _servers.register(f"{app.url}{_servers.SERVE_PATH}")
            client = _servers.driver_client(url)
            try:

                def run(k: int) -> None:
                    if client.execute_sync("ten", {"k": k}, timeout=600) != k:
                        sys.exit(f"instructions_bench: {name}: run {k} gave the wrong output")

                yield run
            finally:
                client.close()
    else:
        import endpoint_bench
        import httpx

        db = tmp / f"{name}.db"
        _servers.remove_db(db)
        path = "/plain" if kind == "plain" else "/three"
        app = endpoint_bench.stepline_app(str(db), "NORMAL", **QUIET)
        app.state.engine.start(timeout=START)  # the lifespan's start then finds it running
        with (
            _servers.ServerThread(app, "endpoint", server=quiet_server, start_seconds=START) as s,
            httpx.Client(base_url=s.url, timeout=600) as http,
        ):

            def request(_k: int) -> None:
                answer = http.post(path)
                if answer.status_code != 200 or answer.json() != ANSWER:
                    sys.exit(f"instructions_bench: POST {path}: {answer.status_code}")

            yield request


class Profiles:
    """``cProfile`` on every thread: the main thread's, and each thread started later."""

    def __init__(self) -> None:
        self._all: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        threading.setprofile(self._install)
        self._start()

    def _start(self) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self._all.append(profile)
        profile.enable()  # replaces this thread's hook: later events go to the profile

    def _install(self, _frame: object, _event: str, _arg: object) -> None:
        self._start()

    def snapshot(self) -> list[Any]:
        """Every thread's entries so far, as they are: the marker's own few calls are the
        only ones it adds to a segment (naming and summing wait for ``totals``)."""
        with self._lock:
            return [profile.getstats() for profile in self._all]

    @staticmethod
    def totals(snapshot: list[Any]) -> dict[str, tuple[int, float]]:
        """Calls and self seconds by function, over every thread, in a snapshot."""
        out: dict[str, tuple[int, float]] = {}
        for entries in snapshot:
            for entry in entries:
                key = function_name(entry.code)
                calls, self_s = out.get(key, (0, 0.0))
                out[key] = (calls + entry.callcount, self_s + entry.inlinetime)
        return out


def function_name(code: object) -> str:
    """``path:line(name)`` of a Python function (path short), or a builtin's description."""
    if isinstance(code, str):
        return code
    filename = str(getattr(code, "co_filename", "?"))
    for prefix in (str(ROOT / "src") + "/", "site-packages/", str(ROOT) + "/", "lib/python"):
        if prefix in filename:
            filename = filename.split(prefix, 1)[1]
            break
    name = getattr(code, "co_qualname", getattr(code, "co_name", "?"))
    return f"{filename}:{getattr(code, 'co_firstlineno', 0)}({name})"


def run_workload(args: argparse.Namespace) -> None:
    """The child: every mode in turn, a marker after the warm-up and after each segment.

    ``--workload callgrind``: the markers make callgrind dump; their labels go to
    ``--out`` in order. ``--workload profile``: the markers take profile snapshots; each
    segment's calls and self time by function go to ``--out``.
    """
    sys.path.insert(0, str(BENCH))
    if args.workload == "callgrind":
        sys.setswitchinterval(SWITCH_INTERVAL)
    from stepline.engine._worker import onthread

    onthread.SLICE = SLICE
    profiles = Profiles() if args.workload == "profile" else None
    labels: list[str | None] = []
    snapshots: list[list[Any]] = []

    def mark(label: str | None) -> None:
        labels.append(label)
        if profiles is not None:
            snapshots.append(profiles.snapshot())
        else:
            os.getpgrp()

    with tempfile.TemporaryDirectory(prefix="instructions-bench-") as name:
        k = 0
        for mode in args.modes:
            with workload(mode, Path(name)) as one:
                for _ in range(args.warmup):
                    one(k)
                    k += 1
                # the heap so far (imports, set-up) out of the collector's way: a full
                # collection's cost grows with it, and one falling in a segment or not
                # would move that segment's count by several percent
                gc.collect()
                gc.freeze()
                mark(None)
                for segment in range(args.segments):
                    for _ in range(args.runs):
                        one(k)
                        k += 1
                    mark(f"{mode}/{segment}")
            print(f"instructions: {args.workload} {mode} done", file=sys.stderr, flush=True)
    if profiles is not None:
        threading.setprofile(None)
        sys.setprofile(None)
        totals = [Profiles.totals(x) for x in snapshots]
        segments = {}
        for i, label in enumerate(labels):
            if label is None:
                continue
            before, after = totals[i - 1], totals[i]
            diff = {}
            for key, (calls, self_s) in after.items():
                calls0, self0 = before.get(key, (0, 0.0))
                if calls > calls0:
                    diff[key] = (calls - calls0, self_s - self0)
            segments[label] = diff
        Path(args.out).write_text(json.dumps(segments))
    else:
        Path(args.out).write_text(json.dumps(labels))


# -- the parent: run both children, read their counts -----------------------------------------


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_argv(kind: str, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, __file__, "--workload", kind, "--out", str(out),
        "--modes", ",".join(args.modes), "--runs", str(args.runs),
        "--segments", str(args.segments), "--warmup", str(args.warmup),
    ]  # fmt: skip


def run_child(argv: list[str], what: str) -> float:
    """Run a child, its stderr relayed; exit with its last lines if it fails; its seconds."""
    began = time.monotonic()
    done = subprocess.run(argv, env=child_env(), cwd=ROOT, check=False)
    if done.returncode != 0:
        sys.exit(f"instructions_bench: the {what} run failed (exit {done.returncode})")
    return time.monotonic() - began


@dataclass
class Dump:
    """One callgrind dump: ``Ir`` by function, its own and with what it called."""

    total: int
    self_ir: dict[str, int]
    calls: dict[tuple[str, str], int]  # (caller, callee): the callee's Ir for the caller

    def top_self(self, per: int, top: int) -> list[dict[str, Any]]:
        ranked = sorted(self.self_ir.items(), key=lambda x: (-x[1], x[0]))[:top]
        return [{"function": f, "ir_per_unit": ir / per} for f, ir in ranked]

    def top_inclusive(self, per: int, top: int) -> list[dict[str, Any]]:
        """By inclusive ``Ir``, the functions that do not call back into Python code.

        A function that does (the interpreter's calls, a thread's entry) has the whole
        program below it, and the interpreter's recursion makes its inclusive figure
        count some work twice; the others are self-contained subsystems (a SQLite
        statement, a JSON encoding, an allocation), whose inclusive cost is exact.
        """
        callees: dict[str, set[str]] = {}
        inclusive = dict(self.self_ir)
        for (caller, callee), ir in self.calls.items():
            callees.setdefault(caller, set()).add(callee)
            if caller != callee:
                inclusive[caller] = inclusive.get(caller, 0) + ir
        python = {EVAL}
        grew = True
        while grew:  # every function from which the interpreter's loop is reachable
            grew = False
            for caller, called in callees.items():
                if caller not in python and called & python:
                    python.add(caller)
                    grew = True
        ranked = sorted(
            ((f, ir) for f, ir in inclusive.items() if f not in python),
            key=lambda x: (-x[1], x[0]),
        )[:top]
        return [{"function": f, "ir_per_unit": ir / per} for f, ir in ranked]


#: the interpreter's loop, which runs Python code
EVAL = "_PyEval_EvalFrameDefault"
COMPRESSED = re.compile(r"^\((\d+)\)(?: (.*))?$")
RECURSION = re.compile(r"'\d+$")


def read_dump(path: Path) -> Dump:
    """Parse a callgrind output file (one event, ``Ir``; names compressed or not).

    A cost line after ``calls=`` is the callee's inclusive cost for that call; any other
    cost line is the current function's own. Recursion levels (``f'2``) count as ``f``;
    a function with no symbol is named by its address and its object's file name.
    """
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}

    def name(kind: str, text: str) -> str:
        found = COMPRESSED.match(text)
        if found is None:
            return text
        key, given = found.groups()
        if given is not None:
            names[kind][key] = given
        return names[kind].get(key, text)

    self_ir: dict[str, int] = {}
    calls: dict[tuple[str, str], int] = {}
    total = 0
    obj = fn = callee = ""
    cobj = ""
    pending = False
    with path.open(errors="replace") as lines:
        for line in lines:
            head = line[:1]
            if head.isdigit() or head in "+-*":
                fields = line.split()
                ir = int(fields[1]) if len(fields) > 1 else 0
                if pending:
                    calls[fn, callee] = calls.get((fn, callee), 0) + ir
                    pending = False
                else:
                    self_ir[fn] = self_ir.get(fn, 0) + ir
            elif line.startswith("fn="):
                fn = function_label(name("fn", line[3:].strip()), obj)
            elif line.startswith("cfn="):
                callee = function_label(name("fn", line[4:].strip()), cobj or obj)
                cobj = ""
            elif line.startswith("calls="):
                pending = True
            elif line.startswith("ob="):
                obj = name("ob", line[3:].strip())
            elif line.startswith("cob="):
                cobj = name("ob", line[4:].strip())
            elif line.startswith(("totals:", "summary:")):
                total = int(line.split(":", 1)[1].split()[0])
    return Dump(total, self_ir, calls)


def function_label(text: str, obj: str) -> str:
    text = RECURSION.sub("", text)
    if text.startswith("0x"):
        return f"{text} ({Path(obj).name})"
    return text


def callgrind(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], float]:
    """Run the workload under callgrind; per mode, each segment's Ir and the top C functions."""
    out = tmp / "callgrind.out"
    labels_file = tmp / "labels.json"
    argv = [
        "valgrind", "--tool=callgrind", f"--dump-before={MARKER}", f"--callgrind-out-file={out}",
        "--log-file=" + str(tmp / "valgrind.log"),
        *child_argv("callgrind", labels_file, args),
    ]  # fmt: skip
    seconds = run_child(argv, "callgrind")
    labels = json.loads(labels_file.read_text())
    result: dict[str, Any] = {}
    for i, label in enumerate(labels, start=1):
        if label is None:
            continue
        mode, _, segment = label.partition("/")
        path = Path(f"{out}.{i}").rename(tmp / f"{mode}.{segment}.callgrind")
        dump = read_dump(path)
        cell = result.setdefault(mode, {"ir_segments": []})
        cell["ir_segments"].append(dump.total)
        if segment == "0":
            cell["top_c_self"] = dump.top_self(args.runs, args.top)
            cell["top_c_inclusive"] = dump.top_inclusive(args.runs, args.top)
    return result, seconds


def profile(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], float]:
    """Run the workload profiled; per mode, each segment's calls and the top functions."""
    out = tmp / "profile.json"
    seconds = run_child(child_argv("profile", out, args), "profile")
    segments: dict[str, dict[str, list[Any]]] = json.loads(out.read_text())
    result: dict[str, Any] = {}
    for label, by in segments.items():
        mode, _, segment = label.partition("/")
        cell = result.setdefault(mode, {"python_calls_segments": [], "builtin_calls_segments": []})
        python = sum(calls for key, (calls, _s) in by.items() if not key.startswith("<"))
        builtin = sum(calls for key, (calls, _s) in by.items() if key.startswith("<"))
        cell["python_calls_segments"].append(python)
        cell["builtin_calls_segments"].append(builtin)
        if segment == "0":
            rows = [
                {"function": key, "calls_per_unit": calls / args.runs,
                 "self_us_per_unit": self_s * 1e6 / args.runs}
                for key, (calls, self_s) in by.items()
            ]  # fmt: skip
            python_rows = [r for r in rows if not r["function"].startswith("<")]
            python_rows.sort(key=lambda r: -r["self_us_per_unit"])
            cell["top_python_self"] = python_rows[: args.top]
            python_rows.sort(key=lambda r: (-r["calls_per_unit"], r["function"]))
            cell["top_python_calls"] = python_rows[: args.top]
            rows.sort(key=lambda r: (-r["calls_per_unit"], r["function"]))
            cell["top_calls"] = rows[: args.top]
    return result, seconds


def spread(values: list[float]) -> float:
    """(max - min) / mean: how far the segments of a mode are apart."""
    mean = statistics.fmean(values)
    return (max(values) - min(values)) / mean if mean else 0.0


def combine(args: argparse.Namespace, counted: dict[str, Any], profiled: dict[str, Any]) -> Any:
    modes = {}
    for name in args.modes:
        mode, c, p = MODES[name], counted[name], profiled[name]
        ir = [x / args.runs for x in c["ir_segments"]]
        python = [x / args.runs for x in p["python_calls_segments"]]
        builtin = [x / args.runs for x in p["builtin_calls_segments"]]
        modes[name] = {
            "label": mode.label,
            "unit": mode.unit,
            "steps_per_unit": mode.steps,
            "ir_per_unit": statistics.fmean(ir),
            "ir_per_step": statistics.fmean(ir) / mode.steps if mode.steps else None,
            "ir_segments_per_unit": ir,
            "ir_spread": spread(ir),
            "python_calls_per_unit": statistics.fmean(python),
            "python_calls_per_step": statistics.fmean(python) / mode.steps if mode.steps else None,
            "python_calls_segments_per_unit": python,
            "python_calls_spread": spread(python),
            "builtin_calls_per_unit": statistics.fmean(builtin),
            "top_c_self": c["top_c_self"],
            "top_c_inclusive": c["top_c_inclusive"],
            "top_python_self": p["top_python_self"],
            "top_python_calls": p["top_python_calls"],
            "top_calls": p["top_calls"],
        }
    return modes


# -- reporting ----------------------------------------------------------------------------


def per_step_text(cell: dict[str, Any], key: str) -> str:
    value = cell[f"{key}_per_step"]
    if value is not None:
        return f"{value:,.0f}"
    return f"{cell[f'{key}_per_unit']:,.0f}/req"


def report(data: dict[str, Any]) -> str:
    lines = [
        f"instructions: {data['runs']} units x {data['segments']} segments per mode after "
        f"{data['warmup']} warm-up, python {data['versions']['python']}, "
        f"{data['versions']['valgrind']}; unit = a run of 10 steps, or a request; load "
        f"average {data['loadavg']['start']} at start, {data['loadavg']['end']} at end",
        f"{'mode':<34}{'Ir/step':>12}{'Ir/unit':>14}{'spread':>8}{'py calls/step':>15}"
        f"{'py calls/unit':>15}{'builtin/unit':>14}",
    ]
    for cell in data["modes"].values():
        lines.append(
            f"{cell['label']:<34}{per_step_text(cell, 'ir'):>12}{cell['ir_per_unit']:>14,.0f}"
            f"{cell['ir_spread']:>8.2%}{per_step_text(cell, 'python_calls'):>15}"
            f"{cell['python_calls_per_unit']:>15,.0f}{cell['builtin_calls_per_unit']:>14,.0f}"
        )
    for name, cell in data["modes"].items():
        lines.append("")
        lines.append(f"{name}: top C functions, Ir per {cell['unit']} (self | inclusive)")
        for a, b in zip(cell["top_c_self"], cell["top_c_inclusive"], strict=False):
            lines.append(
                f"  {a['ir_per_unit']:>12,.0f} {a['function'][:40]:<40}"
                f" | {b['ir_per_unit']:>12,.0f} {b['function'][:40]}"
            )
        lines.append(f"{name}: top Python functions by self time per {cell['unit']} (profiled)")
        for r in cell["top_python_self"]:
            lines.append(
                f"  {r['self_us_per_unit']:>9.1f} us {r['calls_per_unit']:>8.1f} calls  "
                f"{r['function']}"
            )
        lines.append(f"{name}: top Python functions by calls per {cell['unit']}")
        for r in cell["top_python_calls"]:
            lines.append(f"  {r['calls_per_unit']:>8.1f} calls  {r['function']}")
    took = data["seconds"]
    lines.append(f"took {took['total']:.0f} s (under callgrind {took['callgrind']:.0f} s)")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def loadavg() -> str:
    """The machine's load averages (1, 5, 15 minutes), or ``?``."""
    if not hasattr(os, "getloadavg"):
        return "?"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes",
        type=lambda text: text.split(","),
        default=list(MODES),
        help=f"comma-separated, of {', '.join(MODES)} (default: all)",
    )
    parser.add_argument("--runs", type=int, default=5, help="units per segment")
    parser.add_argument("--segments", type=int, default=3, help="measured segments per mode")
    parser.add_argument("--warmup", type=int, default=10, help="units before the first segment")
    parser.add_argument("--top", type=int, default=10, help="functions listed per mode")
    parser.add_argument("--quick", action="store_true", help="1 unit x 1 segment: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep each segment's dump in DIR as MODE.SEGMENT.callgrind (for kcachegrind)",
    )
    parser.add_argument("--workload", choices=("callgrind", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    if args.quick:
        args.runs, args.segments, args.warmup = 1, 1, 1
    if args.runs < 1 or args.segments < 1 or args.warmup < 1:
        parser.error("--runs, --segments and --warmup must be >= 1")
    if args.workload:
        run_workload(args)
        return 0
    if shutil.which("valgrind") is None:
        sys.exit(f"instructions_bench: valgrind is not installed ({INSTALL})")
    began = time.monotonic()
    load_before = loadavg()
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = Path(args.keep)
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="instructions-")))
        counted, callgrind_s = callgrind(args, tmp)
        profiled, profile_s = profile(args, tmp)
    import stepline

    valgrind = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=False
    )
    data = {
        "benchmark": "instructions per step under callgrind, Python calls per step",
        "versions": {
            "python": platform.python_version(),
            "stepline": stepline.__version__,
            "valgrind": valgrind.stdout.strip(),
        },
        "runs": args.runs,
        "segments": args.segments,
        "warmup": args.warmup,
        "loadavg": {"start": load_before, "end": loadavg()},
        "modes": combine(args, counted, profiled),
        "seconds": {
            "callgrind": callgrind_s,
            "profile": profile_s,
            "total": time.monotonic() - began,
        },
    }
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
