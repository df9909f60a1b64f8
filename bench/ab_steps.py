"""Two settings of the engine compared in one process, for changes of a few percent.

On a VM whose speed moves by a third between two 5-second runs, paired runs of two
checkouts cannot tell a 5% change from noise. This runs both sides in one process: two
``EmbeddedEngine``s on two SQLite files, the step-by-step bench function of
``steps_bench.py``, and a module attribute set to side A's value or side B's before each
block of ``--per`` sequential runs (the engines are idle between blocks), alternating
which side goes first. The same value on both sides (an A/A run) shows the noise floor:
a few percent.

``--set MODULE:ATTR=A,B`` (repeatable; ``ATTR`` may be ``Class.attr``; ``A`` and ``B`` are
Python literals, or ``-`` for the attribute's value as imported), for example
``--set stepline.engine._store.sqlite:PAGE_SIZE=4096,1024`` or
``--set "stepline.engine._store.queue:SqliteQueueSql.move_sql='',-"``. An attribute read
when a connection opens is set before each engine starts, so it differs by engine, not by
block. With no ``--set``, an A/A run.

Run: ``.venv/bin/python bench/ab_steps.py [--set ...] [--blocks 20] [--per 40]
[--synchronous NORMAL|FULL] [--json]``
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _servers

import stepline
from stepline.embedded import EmbeddedEngine

Setting = tuple[Any, str, Any, Any]  # owner, attribute, A's value, B's value


def parse_setting(text: str) -> Setting:
    """``MODULE:ATTR=A,B`` (``ATTR`` may be ``Class.attr``) as the object holding the
    attribute, its name and both values."""
    target, _, values = text.partition("=")
    path, _, attr = target.partition(":")
    if not path or not attr or "," not in values:
        raise ValueError(f"--set {text!r}: expected MODULE:ATTR=A,B")
    owner: Any = importlib.import_module(path)
    *names, last = attr.split(".")
    for name in names:
        owner = getattr(owner, name)
    current = getattr(owner, last)
    a_text, _, b_text = values.partition(",")
    return owner, last, _value(a_text, current), _value(b_text, current)


def _value(text: str, current: Any) -> Any:
    return current if text.strip() == "-" else ast.literal_eval(text.strip())


def apply(settings: list[Setting], side: str) -> None:
    for owner, attr, a, b in settings:
        setattr(owner, attr, a if side == "A" else b)


def measure(
    settings: list[Setting], *, blocks: int, per: int, warmup: int, synchronous: str, tmp: Path
) -> dict[str, Any]:
    """Both sides' steps/s and CPU a step, and B's speed over A's per block."""
    sides: dict[str, tuple[stepline.Client, stepline.Function, EmbeddedEngine]] = {}
    try:
        for side in "AB":
            apply(settings, side)
            client = stepline.Client(
                _servers.APP_ID, is_production=False, checkpointing=False, environ={}
            )
            fn = _servers.ten_steps(client)
            engine = EmbeddedEngine(
                client,
                [fn],
                database=f"sqlite:///{tmp / side}.db",
                checkpointing=False,
                sqlite_synchronous=synchronous,
            )
            engine.start()
            sides[side] = (client, fn, engine)
            for k in range(warmup):
                client.start_sync(fn, {"k": k}).result(timeout=60)
        wall = {"A": 0.0, "B": 0.0}
        cpu = {"A": 0.0, "B": 0.0}
        ratios = []
        for block in range(blocks):
            took = {}
            for side in "AB" if block % 2 == 0 else "BA":
                client, fn, _ = sides[side]
                apply(settings, side)
                start, used = time.perf_counter(), time.process_time()
                for k in range(per):
                    assert client.start_sync(fn, {"k": k}).result(timeout=60) == k
                took[side] = time.perf_counter() - start
                wall[side] += took[side]
                cpu[side] += time.process_time() - used
            ratios.append(took["A"] / took["B"])
            print(f"block {block + 1}/{blocks}: B/A {ratios[-1]:.3f}", file=sys.stderr)
    finally:
        for _, _, engine in sides.values():
            engine.stop()
    steps = blocks * per * _servers.STEPS
    return {
        "steps_per_s": {side: steps / wall[side] for side in "AB"},
        "cpu_us_per_step": {side: cpu[side] / steps * 1e6 for side in "AB"},
        "b_over_a_total": wall["A"] / wall["B"],
        "b_over_a_median_block": statistics.median(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="MODULE:ATTR=A,B")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--per", type=int, default=40, help="runs a block")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(text) for text in args.set]
    except (ValueError, ImportError, AttributeError, SyntaxError) as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="stepline-ab-") as tmp:
        out = measure(
            settings,
            blocks=args.blocks,
            per=args.per,
            warmup=args.warmup,
            synchronous=args.synchronous,
            tmp=Path(tmp),
        )
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for side in "AB":
        print(
            f"{side}: {out['steps_per_s'][side]:,.0f} steps/s, "
            f"{out['cpu_us_per_step'][side]:,.0f} us of CPU a step"
        )
    print(
        f"B/A steps/s: {out['b_over_a_total']:.3f} total, "
        f"{out['b_over_a_median_block']:.3f} median block"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
