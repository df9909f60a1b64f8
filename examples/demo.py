"""``make demo``: the Stepline engine and a Flask shop app, over real HTTP, on SQLite.

What happens:

1. ``stepline dev`` starts on a free port with its SQLite database under ``.stepline/``
   (the same command you would run yourself), and the shop app from ``flask_app.py``
   starts next to it.
2. The engine syncs the app: it PUTs the app's endpoint, the app registers its functions.
3. An ordinary route (``POST /orders``) sends ``shop/order.created``; the engine runs
   ``process-order``: steps, a retried step, a sleep and a wait for a shipment event
   (the demo plays the warehouse and sends it). Then ``fan-out`` (parallel steps) and
   ``parent`` (which invokes ``child``) run, started through the engine's event API.
4. Every result is read back from the engine's REST API (``/v1/runs/...``).

Exits 0 after printing "demo finished OK", non-zero if anything goes wrong.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

# ``python examples/demo.py`` puts this directory on sys.path: its siblings import directly.
from flask_app import REGIONAL_SALES_CENTS, create_app
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / ".stepline" / "demo.db"
#: Retries wait 15 s, 30 s, 1 m... in production; the demo shrinks them 100-fold.
RETRY_SCALE = "0.01"
#: The engine's output is echoed from a thread: one line at a time, never mid-line.
_OUTPUT = threading.Lock()


def say(*parts: object, file: TextIO | None = None) -> None:
    """Print one line whole (the engine echo thread prints too) and flush it."""
    with _OUTPUT:
        print(*parts, file=file or sys.stdout, flush=True)


def banner(text: str) -> None:
    """Print a section heading."""
    say(f"\n== {text}")


def check(ok: bool, what: str) -> None:
    """Print a check mark line, or stop the demo."""
    if not ok:
        raise AssertionError(f"unexpected result: {what}")
    say(f"  ok: {what}")


def free_port() -> int:
    """A free localhost port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EngineClient:
    """The few REST calls the demo makes, with polling."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        return self.http.get(path, params=params).raise_for_status().json()

    def send(self, name: str, data: dict[str, Any]) -> str:
        answer = self.http.post("/e/demo", json={"name": name, "data": data})
        return str(answer.raise_for_status().json()["ids"][0])

    def run_of(self, event_id: str, function_id: str, timeout: float = 20.0) -> str:
        """The run an event started for a function."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.get(f"/v1/events/{event_id}/runs")["data"]
            found = [r["run_id"] for r in runs if r["function_id"] == function_id]
            if found:
                return str(found[0])
            time.sleep(0.05)
        raise TimeoutError(f"no {function_id} run for event {event_id}")

    def wait_step(self, run_id: str, name: str, status: str, timeout: float = 20.0) -> None:
        """Wait until a step of a run reaches a status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            steps = self.get(f"/v1/runs/{run_id}/steps")["data"]
            if any(s["name"] == name and s["status"] == status for s in steps):
                return
            time.sleep(0.05)
        raise TimeoutError(f"step {name} of {run_id} never became {status}")

    def finished(self, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The run once it has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.get(f"/v1/runs/{run_id}")["data"]
            if run["status"] in ("Completed", "Failed", "Cancelled"):
                return run
            time.sleep(0.05)
        raise TimeoutError(f"run {run_id} did not finish")

    def timeline(self, run_id: str) -> None:
        """Print a run's steps as the engine recorded them."""
        for step in self.get(f"/v1/runs/{run_id}/steps")["data"]:
            shown = step.get("output") if step.get("error") is None else step["error"]
            say(
                f"    {step['name']:<14} {step['op']:<13} {step['status']:<10} "
                f"attempts={step['attempts']}  {shown}"
            )


def start_engine(port: int) -> subprocess.Popen[str]:
    """``stepline dev`` as a child process; its banner is echoed as it prints."""
    DB.parent.mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "stepline.engine",
        "dev",
        "--port",
        str(port),
        "--db",
        str(DB),
        "--retry-scale",
        RETRY_SCALE,
    ]
    say(f"$ stepline dev --port {port} --db {DB.relative_to(ROOT)}")
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    stdout = proc.stdout

    def echo() -> None:
        for text in stdout:
            say(f"  | {text.rstrip()}")

    threading.Thread(target=echo, daemon=True).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"stepline dev exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).raise_for_status()
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("stepline dev did not start")


def order_flow(engine: EngineClient, app_url: str) -> None:
    """POST /orders starts process-order; the demo plays the warehouse."""
    banner("an ordinary route: POST /orders (it sends shop/order.created)")
    items = [{"sku": "mug", "quantity": 2}, {"sku": "tea", "quantity": 1}]
    new_order = {"customer": "Ada", "items": items, "total_cents": 3450}
    order = httpx.post(f"{app_url}/orders", json=new_order).raise_for_status().json()
    say(f"  201 {order}")

    banner("process-order: steps, a retried step, a sleep and a wait for an event")
    run_id = engine.run_of(order["event_ids"][0], "demo-shop-process-order")
    engine.wait_step(run_id, "wait-shipment", "Waiting")
    say("  the run waits for shop/shipment.sent; the warehouse sends it")
    engine.send("shop/shipment.sent", {"order_id": order["order_id"], "tracking": "1Z-DEMO-42"})
    run = engine.finished(run_id)
    engine.timeline(run_id)
    summary = run["output"]
    say(f"  {run['status']}: {summary}")
    check(run["status"] == "Completed", "run completed")
    check(summary["charge_id"] == f"ch-{order['order_id']}", "card charged after a retry")
    check(summary["tracking"] == "1Z-DEMO-42", "shipment event received")
    check(summary["receipt"].startswith(f"receipt for {order['order_id']}"), "receipt sent")


def fan_out_flow(engine: EngineClient) -> None:
    """Parallel steps, then their sum."""
    banner("fan-out: three steps in parallel, then their sum")
    fan_id = engine.run_of(engine.send("shop/report.requested", {}), "demo-shop-fan-out")
    report = engine.finished(fan_id)
    engine.timeline(fan_id)
    say(f"  {report['status']}: {report['output']}")
    total = sum(REGIONAL_SALES_CENTS.values())
    check(report["output"]["total_cents"] == total, "regions summed")


def invoke_flow(engine: EngineClient) -> None:
    """A parent function invoking a child as a step."""
    banner("parent: invokes child as a step")
    reward = {"customer": "Ada", "amount_cents": 3450}
    parent_id = engine.run_of(engine.send("shop/customer.rewarded", reward), "demo-shop-parent")
    rewarded = engine.finished(parent_id)
    engine.timeline(parent_id)
    say(f"  {rewarded['status']}: {rewarded['output']}")
    check(rewarded["output"] == {"customer": "Ada", "points": 34}, "child result returned")


def main() -> int:
    """Run the demo; returns the process exit code."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    started = time.monotonic()
    engine_url = f"http://127.0.0.1:{free_port()}"
    engine_proc = start_engine(int(engine_url.rsplit(":", 1)[1]))
    server = make_server("127.0.0.1", 0, create_app(engine_url), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app_url = f"http://127.0.0.1:{server.server_port}"
    engine = EngineClient(engine_url)
    try:
        banner(f"shop app on {app_url}, engine on {engine_url}")
        synced = engine.http.post("/v1/apps/sync", json={"url": f"{app_url}/api/inngest"})
        synced.raise_for_status()
        functions = sorted(f["function_id"] for f in engine.get("/v1/functions")["data"])
        say(f"  synced {app_url}/api/inngest -> registered: {', '.join(functions)}")

        order_flow(engine, app_url)
        fan_out_flow(engine)
        invoke_flow(engine)
        say("\n  keep an engine up yourself with: .venv/bin/stepline dev -u <app url>")
    except Exception as exc:
        say(f"\ndemo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.http.close()
        server.shutdown()
        engine_proc.terminate()
        engine_proc.wait(timeout=10)
    say(f"\ndemo finished OK in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
