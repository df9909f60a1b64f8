"""Handler micro-benchmark: stepline vs the official ``inngest`` SDK, same request, same run.

One execution request for an event-triggered function that calls ``step.run`` eleven
times (``s0``..``s10``): the request memoizes ``s0``..``s9``, so each SDK replays ten
memos, runs ``s10`` and answers 206 with one ``StepRun`` op. Both SDKs are called
in-process at their lowest framework-neutral layer (no HTTP server, no framework):

* stepline: ``stepline._comm.CommHandler.handle_sync`` / ``handle`` on a
  ``CommRequest.build(...)`` request; the response body is already wire bytes.
* inngest: ``inngest._internal.comm_lib.CommHandler.post_sync`` / ``post`` on its own
  ``comm_lib.CommRequest`` model, built exactly as ``inngest.flask`` builds it, plus
  ``CommResponse.body_bytes()``, which ``inngest.flask._to_response`` calls to get the
  wire bytes (the Flask ``Response`` itself is left out).

Each timed iteration builds the SDK's request object from the same raw parts (method,
URL, headers, body bytes), handles it and produces the response body bytes.

Run: ``.venv/bin/python bench/handler_bench.py [--seconds 2] [--rounds 3] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# Neither SDK may pick up settings from the caller's environment: stepline gets
# ``environ={}``, and inngest reads ``os.environ``, so its variables are cleared here,
# before either SDK is imported.
for _name in list(os.environ):
    if _name.startswith(("INNGEST_", "STEPLINE_")):
        del os.environ[_name]

import inngest  # noqa: E402
from inngest._internal import comm_lib, const, server_lib  # noqa: E402

import stepline  # noqa: E402
from stepline._comm import CommHandler as SteplineHandler  # noqa: E402
from stepline._comm import CommRequest as SteplineRequest  # noqa: E402

MEMOIZED = 10  # s0..s9 are memoized; s10 is the step to run
METHOD = "POST"
URL = "http://localhost/api/inngest?fnId=bench-fn&stepId=step"
HEADERS = {"content-type": "application/json"}
SDKS = ("stepline", "inngest")
VARIANTS = ("sync", "async")


def step_hash(step_id: str) -> str:
    return hashlib.sha1(step_id.encode()).hexdigest()


def build_body() -> bytes:
    """A dev-mode execution request with ``s0``..``s9`` memoized (no signature)."""
    event = {
        "name": "bench/fn",
        "data": {"n": 1},
        "id": "01JEVENTBENCH0000000000000",
        "ts": 1700000000000,
        "user": {},
    }
    hashes = [step_hash(f"s{i}") for i in range(MEMOIZED)]
    body = {
        "event": event,
        "events": [event],
        "steps": {h: {"data": {"i": i}} for i, h in enumerate(hashes)},
        "ctx": {
            "attempt": 0,
            "disable_immediate_execution": False,
            "fn_id": "bench-fn",
            "run_id": "01JRUNBENCH000000000000000",
            "step_id": "step",
            "stack": {"stack": hashes, "current": len(hashes)},
            "max_attempts": 4,
        },
        "use_api": False,
        "version": 2,
    }
    return json.dumps(body).encode()


BODY = build_body()

# A "runner" handles one request and returns (status, body bytes).
SyncRunner = Callable[[], tuple[int, bytes]]
AsyncRunner = Callable[[], Awaitable[tuple[int, bytes]]]


def _step(i: int) -> Callable[[], dict[str, int]]:
    return lambda: {"i": i}


STEP_HANDLERS = [_step(i) for i in range(MEMOIZED + 1)]


# -- stepline ---------------------------------------------------------------------------


def stepline_runner(variant: str) -> SyncRunner | AsyncRunner:
    client = stepline.Client("bench", is_production=False, environ={})
    trigger = stepline.TriggerEvent(event="bench/fn")

    if variant == "sync":

        @client.function(id="fn", trigger=trigger)
        def fn_sync(ctx: stepline.SyncContext) -> None:
            for i, handler in enumerate(STEP_HANDLERS):
                ctx.step.run(f"s{i}", handler)

        sync_handler = SteplineHandler(client=client, functions=[fn_sync], framework="bench")

        def run_sync() -> tuple[int, bytes]:
            req = SteplineRequest.build(method=METHOD, url=URL, headers=HEADERS, body=BODY)
            res = sync_handler.handle_sync(req)
            return res.status, res.body

        return run_sync

    @client.function(id="fn", trigger=trigger)
    async def fn_async(ctx: stepline.Context) -> None:
        for i, handler in enumerate(STEP_HANDLERS):
            await ctx.step.run(f"s{i}", handler)

    async_handler = SteplineHandler(client=client, functions=[fn_async], framework="bench")

    async def run_async() -> tuple[int, bytes]:
        req = SteplineRequest.build(method=METHOD, url=URL, headers=HEADERS, body=BODY)
        res = await async_handler.handle(req)
        return res.status, res.body

    return run_async


# -- inngest ----------------------------------------------------------------------------


def _inngest_request() -> comm_lib.CommRequest:
    # As inngest.flask builds it (query params as the parsed mapping, no raw request).
    return comm_lib.CommRequest(
        body=BODY,
        headers=dict(HEADERS),
        public_path=None,
        query_params={"fnId": "bench-fn", "stepId": "step"},
        raw_request=None,
        request_url=URL,
        serve_origin=None,
        serve_path=None,
    )


def _inngest_bytes(res: comm_lib.CommResponse) -> tuple[int, bytes]:
    body = res.body_bytes()
    if isinstance(body, Exception):
        raise body
    return res.status_code, body


def inngest_runner(variant: str) -> SyncRunner | AsyncRunner:
    client = inngest.Inngest(app_id="bench", is_production=False)
    trigger = inngest.TriggerEvent(event="bench/fn")

    def make_handler(fn: inngest.Function[Any]) -> comm_lib.CommHandler:
        return comm_lib.CommHandler(
            client=client,
            enable_unauthed_sync=None,
            framework=server_lib.Framework.FLASK,
            functions=[fn],
            streaming=const.Streaming.DISABLE,
        )

    if variant == "sync":

        @client.create_function(fn_id="fn", trigger=trigger)
        def fn_sync(ctx: inngest.ContextSync) -> None:
            for i, handler in enumerate(STEP_HANDLERS):
                ctx.step.run(f"s{i}", handler)

        sync_handler = make_handler(fn_sync)

        def run_sync() -> tuple[int, bytes]:
            return _inngest_bytes(sync_handler.post_sync(_inngest_request()))

        return run_sync

    @client.create_function(fn_id="fn", trigger=trigger)
    async def fn_async(ctx: inngest.Context) -> None:
        for i, handler in enumerate(STEP_HANDLERS):
            await ctx.step.run(f"s{i}", handler)

    async_handler = make_handler(fn_async)

    async def run_async() -> tuple[int, bytes]:
        return _inngest_bytes(await async_handler.post(_inngest_request()))

    return run_async


RUNNER_FACTORIES = {"stepline": stepline_runner, "inngest": inngest_runner}


# -- checking and timing ----------------------------------------------------------------


def call_once(variant: str, runner: Any) -> tuple[int, bytes]:
    if variant == "sync":
        return runner()  # type: ignore[no-any-return]
    return asyncio.run(runner())  # type: ignore[no-any-return]


def check(sdk: str, variant: str, runner: Any) -> Any:
    """Fail loudly unless the response is 206 with one StepRun op for ``s10``; return it."""
    status, body = call_once(variant, runner)
    problem = None
    ops: Any = None
    try:
        ops = json.loads(body)
    except ValueError:
        problem = "body is not JSON"
    want_id = step_hash(f"s{MEMOIZED}")
    if problem is None and status != 206:
        problem = f"status {status}, want 206"
    elif problem is None and not (isinstance(ops, list) and len(ops) == 1):
        problem = "want exactly one op"
    elif problem is None:
        op = ops[0]
        if op.get("op") != "StepRun":
            problem = f"op {op.get('op')!r}, want 'StepRun'"
        elif op.get("id") != want_id:
            problem = f"op id {op.get('id')!r}, want {want_id!r} (hash of s{MEMOIZED})"
        elif op.get("data") != {"i": MEMOIZED}:
            problem = f"op data {op.get('data')!r}, want {{'i': {MEMOIZED}}}"
    if problem is not None:
        sys.exit(f"handler_bench: {sdk} {variant}: {problem}\n  status={status} body={body!r}")
    return ops


def time_sync(runner: SyncRunner, seconds: float) -> tuple[int, float]:
    clock = time.perf_counter
    n = 0
    start = clock()
    deadline = start + seconds
    while True:
        runner()
        n += 1
        now = clock()
        if now >= deadline:
            return n, now - start


async def _time_async(runner: AsyncRunner, seconds: float) -> tuple[int, float]:
    clock = time.perf_counter
    n = 0
    start = clock()
    deadline = start + seconds
    while True:
        await runner()
        n += 1
        now = clock()
        if now >= deadline:
            return n, now - start


def measure(variant: str, runner: Any, seconds: float) -> float:
    """Requests per second over ``seconds`` of wall time."""
    gc.collect()
    if variant == "sync":
        n, elapsed = time_sync(runner, seconds)
    else:
        n, elapsed = asyncio.run(_time_async(runner, seconds))
    return n / elapsed


@dataclass
class Result:
    variant: str
    sdk: str
    rates: list[float]

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "inngest": importlib.metadata.version("inngest"),
        "stepline": stepline.__version__,
    }


def run(seconds: float, rounds: int, warmup: float, variants: list[str]) -> list[Result]:
    runners = {
        (sdk, variant): RUNNER_FACTORIES[sdk](variant) for variant in variants for sdk in SDKS
    }
    answers = {key: check(*key, runner) for key, runner in runners.items()}
    for variant in variants:
        # Wire compatibility: both SDKs must answer with the same op (JSON-equal).
        if answers["stepline", variant] != answers["inngest", variant]:
            sys.exit(
                f"handler_bench: {variant}: the SDKs' responses differ\n"
                f"  stepline: {answers['stepline', variant]}\n"
                f"  inngest:  {answers['inngest', variant]}"
            )
    for (_sdk, variant), runner in runners.items():
        if warmup > 0:
            measure(variant, runner, warmup)
    results = {key: Result(key[1], key[0], []) for key in runners}
    for r in range(rounds):
        # Interleave the SDKs round by round, alternating who goes first.
        order = SDKS if r % 2 == 0 else tuple(reversed(SDKS))
        parts = []
        for variant in variants:
            for sdk in order:
                rate = measure(variant, runners[sdk, variant], seconds)
                results[sdk, variant].rates.append(rate)
            s, i = results["stepline", variant].rates[-1], results["inngest", variant].rates[-1]
            parts.append(f"{variant}: stepline {s:,.0f} inngest {i:,.0f} ({s / i:.2f}x)")
        print(f"round {r + 1}/{rounds}: " + "; ".join(parts), file=sys.stderr, flush=True)
    return list(results.values())


def report(results: list[Result], variants: list[str], meta: dict[str, Any]) -> str:
    by = {(r.sdk, r.variant): r for r in results}
    v = meta["versions"]
    lines = [
        f"handler: {MEMOIZED} memoized steps + 1 to run, in-process "
        f"(python {v['python']}, inngest {v['inngest']}, stepline {v['stepline']})",
        f"{meta['rounds']} rounds x {meta['seconds']:g} s per SDK per variant; "
        "req/s shown as best (median)",
        f"{'variant':<8}{'stepline req/s':>24}{'inngest req/s':>24}{'ratio':>16}",
    ]
    for variant in variants:
        s, i = by["stepline", variant], by["inngest", variant]
        lines.append(
            f"{variant:<8}"
            f"{f'{s.best:,.0f} ({s.median:,.0f})':>24}"
            f"{f'{i.best:,.0f} ({i.median:,.0f})':>24}"
            f"{f'{s.best / i.best:.2f}x ({s.median / i.median:.2f}x)':>16}"
        )
    return "\n".join(lines)


def to_json(results: list[Result], variants: list[str], meta: dict[str, Any]) -> str:
    by = {(r.sdk, r.variant): r for r in results}
    out: dict[str, Any] = {**meta, "variants": {}}
    for variant in variants:
        s, i = by["stepline", variant], by["inngest", variant]
        out["variants"][variant] = {
            sdk: {"best": r.best, "median": r.median, "rounds": r.rates}
            for sdk, r in (("stepline", s), ("inngest", i))
        }
        out["variants"][variant]["ratio_best"] = s.best / i.best
        out["variants"][variant]["ratio_median"] = s.median / i.median
    return json.dumps(out, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="wall time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per runner")
    parser.add_argument(
        "--variant", choices=VARIANTS, action="append", help="run only this variant (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be > 0 and --rounds >= 1")
    variants = args.variant or list(VARIANTS)
    results = run(args.seconds, args.rounds, args.warmup, variants)
    meta = {
        "benchmark": "handler: 10 memoized steps + 1 to run, in-process",
        "versions": versions(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "inngest_layer": "inngest._internal.comm_lib.CommHandler.post_sync/post + body_bytes",
        "stepline_layer": "stepline._comm.CommHandler.handle_sync/handle",
    }
    print(to_json(results, variants, meta) if args.json else report(results, variants, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
