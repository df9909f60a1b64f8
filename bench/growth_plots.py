"""The plots of ``growth_bench.py``'s JSON: one PNG per measure, in ``bench/img/``.

* ``growth_sleep.png``: for each store and count of sleeping runs, how late the runs woke
  (p50 and p99 of each fiftieth of the runs, in due order) against when they were due,
  and the runs woken so far against time;
* ``growth_active.png``: steps/s and the probe's event to first step (p50, p99) against
  the number of runs stepping at once;
* ``growth_fanout.png``: a fan-out's time to its result, and per child, against its width;
* ``growth_long.png``: the time per step along a run of 10,000 steps (each hundredth's
  mean), step by step (with the part spent replaying the steps before it) and checkpointed.

Run: ``.venv/bin/python bench/growth_plots.py growth.json [...] [--out bench/img]`` (several
JSON files: each store's measurements are put together).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

OUT = Path(__file__).resolve().parent / "img"
COLORS = {"sqlite": "tab:blue", "postgres": "tab:orange"}


def merged(paths: list[Path]) -> dict[str, Any]:
    """One JSON's shape from several runs: each store's measurements of each part, in
    the files' order (a run of 100,000 sleeping runs and one of 1,000,000 plot together)."""
    data: dict[str, Any] = {"stores": {}}
    for path in paths:
        one = json.loads(path.read_text())
        for key in ("cpus", "versions", "quick", "sizes"):
            data.setdefault(key, one.get(key))
        for store, parts in one["stores"].items():
            if "skipped" not in parts:
                for part, cases in parts.items():
                    data["stores"].setdefault(store, {}).setdefault(part, []).extend(cases)
    return data


def subtitle(data: dict[str, Any]) -> str:
    quick = ", QUICK sizes" if data.get("quick") else ""
    return f"{data.get('cpus')} CPUs, python {data.get('versions', {}).get('python')}{quick}"


def sleep_plot(data: dict[str, Any], out: Path) -> Path | None:
    cases = [(s, x) for s, parts in data["stores"].items() for x in parts.get("sleep", [])]
    if not cases:
        return None
    fig, (late, woke) = plt.subplots(1, 2, figsize=(12, 4.5))
    due_lines: set[int] = set()
    for store, x in cases:
        n = x["sleepers"]
        window = data.get("sizes", {}).get("window", 60.0)
        slices = x["late_by_due"]
        due = [window * (i + 0.5) / len(slices) for i in range(len(slices))]
        style = "-" if n < 500_000 else "--"
        waking = x.get("waking", n)
        label = f"{store} {n:,}" + (f" ({waking:,} due)" if waking != n else "")
        late.plot(due, [p50 for p50, _ in slices], style, color=COLORS[store], label=f"{label} p50")
        late.plot(due, [p99 for _, p99 in slices], style, color=COLORS[store], alpha=0.45,
                  label=f"{label} p99")  # fmt: skip
        t = [p[0] for p in x["timeline"]]
        woke.plot(t, [p[1] for p in x["timeline"]], style, color=COLORS[store], label=label)
        if waking not in due_lines:  # when they came due: one line per count
            due_lines.add(waking)
            woke.plot([0, window], [0, waking], ":", color="gray", label=f"{waking:,} due")
    late.set_xlabel("due time, s after the first (they come due evenly)")
    late.set_ylabel("woke late by, s (actual - due)")
    late.set_title("wake-up lateness by due time")
    late.legend(fontsize=8)
    woke.set_xlabel("s after the first due time")
    woke.set_ylabel("runs woken")
    woke.set_title("runs woken against time")
    woke.legend(fontsize=8)
    fig.suptitle(f"sleeping runs coming due within a minute ({subtitle(data)})")
    fig.tight_layout()
    path = out / "growth_sleep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def active_plot(data: dict[str, Any], out: Path) -> Path | None:
    cases = {s: parts["active"] for s, parts in data["stores"].items() if parts.get("active")}
    if not cases:
        return None
    fig, (rate, lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    for store, xs in cases.items():
        n = [x["runs"] for x in xs]
        rate.plot(n, [x["steps_per_s"] for x in xs], "o-", color=COLORS[store], label=store)
        lat.plot(n, [x["probe_first_p50_ms"] for x in xs], "o-", color=COLORS[store],
                 label=f"{store} p50")  # fmt: skip
        lat.plot(n, [x["probe_first_p99_ms"] for x in xs], "s--", color=COLORS[store],
                 label=f"{store} p99")  # fmt: skip
    for ax in (rate, lat):
        ax.set_xscale("log")
        ax.set_xlabel("runs stepping at once (step by step)")
        ax.legend(fontsize=8)
    rate.set_ylabel("steps/s, all runs")
    rate.set_ylim(bottom=0)
    rate.set_title("throughput")
    lat.set_yscale("log")
    lat.set_ylabel("ms")
    lat.set_title("a new event -> its run's first step, meanwhile")
    fig.suptitle(f"runs active at once ({subtitle(data)})")
    fig.tight_layout()
    path = out / "growth_active.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fanout_plot(data: dict[str, Any], out: Path) -> Path | None:
    cases = {s: parts["fanout"] for s, parts in data["stores"].items() if parts.get("fanout")}
    if not cases:
        return None
    fig, (total, per) = plt.subplots(1, 2, figsize=(12, 4.5))
    for store, xs in cases.items():
        w = [x["width"] for x in xs]
        total.plot(w, [x["seconds"] for x in xs], "o-", color=COLORS[store], label=store)
        per.plot(w, [x["ms_per_child"] for x in xs], "o-", color=COLORS[store], label=store)
    for ax in (total, per):
        ax.set_xscale("log")
        ax.set_xlabel("children invoked in one parallel group")
        ax.legend(fontsize=8)
    total.set_yscale("log")
    total.set_ylabel("s, parent's start to its result")
    total.set_title("fan-out time")
    per.set_ylim(bottom=0)
    per.set_ylabel("ms per child")
    per.set_title("per child (flat: linear)")
    fig.suptitle(f"one run invoking children and waiting for all ({subtitle(data)})")
    fig.tight_layout()
    path = out / "growth_fanout.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def long_plot(data: dict[str, Any], out: Path) -> Path | None:
    cases = [(s, x) for s, parts in data["stores"].items() for x in parts.get("long", [])]
    if not cases:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for store, x in cases:
        n = x["steps"]
        k = [n * (i + 0.5) / len(x["per_step_ms"]) for i in range(len(x["per_step_ms"]))]
        style = "-" if x["mode"] == "step-by-step" else ":"
        ax.plot(k, x["per_step_ms"], style, color=COLORS[store], label=f"{store} {x['mode']}")
        if x["mode"] == "step-by-step":
            r = x["replay_ms"]
            kr = [n * (i + 0.5) / len(r) for i in range(len(r))]
            ax.plot(kr, r, "--", color=COLORS[store], alpha=0.5,
                    label=f"{store} step-by-step: of it, the function's replay")  # fmt: skip
    ax.set_xlabel("step number")
    ax.set_ylabel("ms per step (mean of each hundredth)")
    ax.set_yscale("log")
    ax.set_title(f"a run of {cases[0][1]['steps']:,} steps ({subtitle(data)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "growth_long.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot(data: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the data has parts for; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    made = [f(data, out) for f in (sleep_plot, active_plot, fanout_plot, long_plot)]
    return [p for p in made if p is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, nargs="+", help="growth_bench.py --json output")
    parser.add_argument("--out", type=Path, default=OUT, help=f"(default {OUT})")
    args = parser.parse_args(argv)
    data = merged(args.json)
    for path in plot(data, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
