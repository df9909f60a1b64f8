"""Time to check 1,000 live runs of 10 steps: ``stepline deploy check``, end to end.

The goal: under 10 s on the 2-core development VM for 1,000 live runs of 10 steps each.

The engine is a process of its own (``_servers.serve_node``: the engine as ``stepline
dev`` builds it, on a SQLite file on disk, its API under uvicorn) serving the app
``_deploy_app.py`` in process: a function of ten steps, then a sleep of thirty days.
``--runs`` events start as many runs, which are left until every one sleeps (ten
completed steps each, live): real runs, recorded by the engine as production records
them.

Then, ``--rounds`` times, the check as CI runs it: ``stepline deploy check
_deploy_app:client --url ENGINE --json``, the console script in a child process, timed
from its start to its exit (the interpreter's start, the imports, the target's import,
listing the runs, one ``GET /v1/runs/{id}/export`` per run and its replay against the
code, the report), with bytecode cached as an installed package has it: a first check,
untimed, writes it under a temporary ``PYTHONPYCACHEPREFIX``. Every round's report must
say ``ok`` with every run's verdict ``ok``. It prints the median wall time and runs/s,
and the check's own ``seconds`` (its report's: listing, exports and replays, without the
interpreter's start and the imports).

``--profile FILE`` runs the check once more under ``cProfile`` (``python -m cProfile -o
FILE -m stepline.engine deploy check ...``) and prints where its time goes.

Run: ``.venv/bin/python bench/deploy_check_bench.py [--runs 1000] [--rounds 5] [--quick]
[--profile FILE] [--json]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _deploy_app
import _servers
import httpx

import stepline

BENCH = Path(__file__).resolve().parent
TARGET = "_deploy_app:client"
#: the goal, seconds for 1,000 runs
GOAL_S = 10.0
GOAL_RUNS = 1000
#: events per ``POST /v1/events``
BATCH = 200


def check_args(engine_url: str) -> list[str]:
    """The check's arguments."""
    return ["deploy", "check", TARGET, "--url", engine_url, "--json"]


def check_command(engine_url: str) -> list[str]:
    """``stepline deploy check`` as CI types it: the venv's console script."""
    script = Path(sys.executable).with_name("stepline")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "stepline.engine"]
    return [*head, *check_args(engine_url)]


def start_runs(engine_url: str, runs: int) -> None:
    """Send ``runs`` events, ``BATCH`` a request."""
    with httpx.Client(timeout=60) as http:
        for first in range(0, runs, BATCH):
            events = [
                {"name": _deploy_app.EVENT, "data": {"k": k}}
                for k in range(first, min(first + BATCH, runs))
            ]
            answer = http.post(f"{engine_url}/v1/events", json=events)
            if answer.status_code not in (200, 201):
                sys.exit(f"bench: sending events failed: {answer.status_code} {answer.text}")


def sleeping(db: str) -> int:
    """How many runs sleep in their last step."""
    sql = "SELECT COUNT(*) FROM steps WHERE name = ? AND status = 'Sleeping'"
    return int(_servers.db_row(db, sql, (_deploy_app.SLEEP,))[0])


def wait_asleep(db: str, runs: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = -1
    while (found := sleeping(db)) < runs:
        if time.monotonic() > deadline:
            sys.exit(f"bench: only {found} of {runs} runs asleep after {timeout:.0f} s")
        if found != last and found:
            print(f"  {found}/{runs} runs asleep", file=sys.stderr, flush=True)
            last = found
        time.sleep(0.5)


def check_env(pycache: Path) -> dict[str, str]:
    """The check's environment: bytecode cached under ``pycache``, as an installed package
    has it (even where the caller's environment says not to write any)."""
    env = _servers.child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def one_check(engine_url: str, runs: int, env: dict[str, str]) -> dict[str, float]:
    """One timed check; exits unless every run replays ``ok``."""
    began = time.perf_counter()
    done = subprocess.run(
        check_command(engine_url),
        capture_output=True,
        text=True,
        cwd=BENCH,  # the target imports from the working directory, as in a project
        env=env,
        check=False,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(
            f"bench: the check exited {done.returncode}:\n{done.stderr}\n{done.stdout[-2000:]}"
        )
    report = json.loads(done.stdout)
    verdicts = [r for f in report["functions"] for r in f["results"]]
    counts = report["counts"]
    if not report["ok"] or counts["runs"] != runs or counts["ok"] != runs:
        sys.exit(f"bench: expected {runs} ok verdicts, got {counts}")
    if len(verdicts) != runs or any(v["verdict"] != "ok" for v in verdicts):
        sys.exit("bench: a verdict is not ok")
    return {"wall_s": wall, "check_s": float(report["seconds"])}


def profile(engine_url: str, out: Path, env: dict[str, str], top: int = 25) -> str:
    """The check once under cProfile; its top functions by own time and by cumulative."""
    profiler = [sys.executable, "-m", "cProfile", "-o", str(out)]
    argv = [*profiler, "-m", "stepline.engine", *check_args(engine_url)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=BENCH, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: the profiled check exited {done.returncode}:\n{done.stderr}")
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def run(runs: int, rounds: int, profile_to: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp_name:
        tmp = Path(tmp_name)
        db = str(tmp / "engine.db")
        port = _servers.free_port()
        url = f"http://127.0.0.1:{port}"
        engine = [sys.executable, __file__, "--serve-engine", str(port), db]
        with _servers.processes([("engine", engine, f"{url}/health")], tmp):
            began = time.perf_counter()
            start_runs(url, runs)
            wait_asleep(db, runs, timeout=max(120.0, runs * 0.5))
            setup_s = time.perf_counter() - began
            print(f"  {runs} runs asleep in {setup_s:.1f} s", file=sys.stderr, flush=True)
            env = check_env(tmp / "pycache")
            first = one_check(url, runs, env)  # compiles the bytecode the rounds then read
            print(
                f"  first check (compiling bytecode): {first['wall_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            measured = []
            for n in range(rounds):
                one = one_check(url, runs, env)
                measured.append(one)
                print(
                    f"  round {n + 1}: {one['wall_s']:.2f} s end to end "
                    f"(the check itself {one['check_s']:.2f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            profiled = profile(url, profile_to, env) if profile_to is not None else None
    wall = statistics.median(m["wall_s"] for m in measured)
    check = statistics.median(m["check_s"] for m in measured)
    scaled = wall * GOAL_RUNS / runs
    return {
        "runs": runs,
        "steps_per_run": _deploy_app.STEPS,
        "setup_s": setup_s,
        "first_s": first["wall_s"],
        "rounds": measured,
        "median_wall_s": wall,
        "median_check_s": check,
        "startup_s": wall - check,
        "runs_per_s": runs / wall,
        "goal_s": GOAL_S,
        "goal_runs": GOAL_RUNS,
        "met": runs == GOAL_RUNS and wall < GOAL_S,
        "scaled_to_goal_runs_s": scaled,
        "profile": profiled,
    }


def report(result: dict[str, Any]) -> str:
    runs = result["runs"]
    goal = "met" if result["met"] else ("NOT met" if runs == GOAL_RUNS else "n/a (not 1,000 runs)")
    return "\n".join(
        [
            f"stepline deploy check, {runs} live runs of {result['steps_per_run']} steps "
            f"({len(result['rounds'])} rounds; setup {result['setup_s']:.1f} s)",
            f"  end to end, median: {result['median_wall_s']:.2f} s "
            f"({result['runs_per_s']:,.0f} runs/s); goal < {GOAL_S:g} s for "
            f"{GOAL_RUNS:,} runs: {goal}",
            f"  of it the check itself (list, export, replay): {result['median_check_s']:.2f} s; "
            f"start and imports: {result['startup_s']:.2f} s",
            "  rounds: " + ", ".join(f"{m['wall_s']:.2f}" for m in result["rounds"]),
            f"  first check, compiling the bytecode (not a round): {result['first_s']:.2f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=GOAL_RUNS, help="live runs to check")
    parser.add_argument("--rounds", type=int, default=5, help="timed checks")
    parser.add_argument("--quick", action="store_true", help="20 runs, 1 round (a smoke run)")
    parser.add_argument("--profile", type=Path, help="profile one more check into FILE")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = 20, 1
    result = run(args.runs, args.rounds, args.profile)
    meta = {
        "python": platform.python_version(),
        "stepline": stepline.__version__,
        "cpus": os.cpu_count(),
        "quick": args.quick,
    }
    if args.json:
        print(json.dumps({**result, **meta}, indent=2))
    else:
        print(report(result))
        if result["profile"]:
            print(result["profile"])
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-engine"]:
        _servers.serve_node(int(sys.argv[2]), sys.argv[3], _deploy_app.build)
    else:
        raise SystemExit(main())
