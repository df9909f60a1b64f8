"""A tiny stand-in for the engine, so the demo can run before the real one exists.

It speaks the real wire protocol over real HTTP (see PROTOCOL.md §2-§4): it inspects and
syncs an app, then drives one run at a time by POSTing execution requests and reacting to
the ops the SDK reports. It keeps everything in memory, runs one request at a time and
skips backoff, queues, timeouts and persistence: it is a teaching aid, not an engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

#: Given the run's trigger event and a ``WaitForEvent`` op, the event that arrives (or None).
EventSource = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]
DEFAULT_RETRIES = 4  # what the engine assumes when a function does not say
MAX_CALLS_PER_RUN = 50  # a safety net against a function that never finishes
WAIT_PAUSE_SECONDS = 0.3  # how long a waited-for event takes to "arrive"


class RunFailedError(Exception):
    """A run failed: its retries ran out, or the error was marked non-retriable."""


class Registry:
    """The engine API's ``POST /fn/register``, on a stdlib server; records function configs."""

    def __init__(self) -> None:
        self.functions: dict[str, dict[str, Any]] = {}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if urllib.parse.urlsplit(self.path).path != "/fn/register":
                    return self._answer(404, {"error": f"no route for {self.path}"})
                for config in json.loads(raw)["functions"]:
                    registry.functions[config["id"]] = config
                return self._answer(200, {"ok": True, "modified": True})

            def _answer(self, status: int, value: object) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the demo's output for the interesting lines."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Registry:
        """Serve on a daemon thread."""
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


@dataclasses.dataclass
class Run:
    """One run's state: what a real engine would persist between calls."""

    name: str
    url: str
    event: dict[str, Any]
    max_attempts: int
    run_id: str = dataclasses.field(default_factory=lambda: f"run-{uuid.uuid4().hex[:12]}")
    memos: dict[str, Any] = dataclasses.field(default_factory=dict)  # hashed step id -> memo
    stack: list[str] = dataclasses.field(default_factory=list)  # hashed ids, completion order
    calls: int = 0  # HTTP requests made to the app for this run


class MiniExecutor:
    """Drives the functions served at ``serve_url``, one run at a time.

    Args:
        serve_url: the app's serve endpoint, e.g. ``http://127.0.0.1:8000/api/inngest``.
        registry: where the app registers its functions when synced.
        event_source: produces the event a ``step.wait_for_event`` receives.
    """

    def __init__(self, serve_url: str, registry: Registry, event_source: EventSource) -> None:
        self.serve_url = serve_url
        self.registry = registry
        self.event_source = event_source
        self.http = httpx.Client(timeout=30)
        self._started = time.monotonic()

    def log(self, fn: str, step: str, what: str) -> None:
        """Print one progress line: elapsed time, function, step, what happened."""
        elapsed = time.monotonic() - self._started
        print(f"  [{elapsed:5.2f}s] {fn:<13} {step:<15} {what}", flush=True)

    def inspect(self) -> dict[str, Any]:
        """GET the serve endpoint: the app's public self-description."""
        body: dict[str, Any] = self.http.get(self.serve_url).raise_for_status().json()
        return body

    def sync(self) -> list[str]:
        """PUT the serve endpoint; the app answers by POSTing its functions to the registry."""
        self.http.put(self.serve_url).raise_for_status()
        return sorted(self.registry.functions)

    def send(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Run every function triggered by an event; returns their results by function id."""
        event = _event(name, data)
        return {
            fn_id: self.run(fn_id, event)
            for fn_id, config in self.registry.functions.items()
            if any(trigger.get("event") == name for trigger in config["triggers"])
        }

    def run(self, fn_id: str, event: dict[str, Any]) -> Any:
        """Run a function to completion and return its output; raises ``RunFailedError``."""
        config = self.registry.functions[fn_id]
        step = config["steps"]["step"]
        retries = step.get("retries", {}).get("attempts", DEFAULT_RETRIES)
        run = Run(config["name"], step["runtime"]["url"], event, max_attempts=retries + 1)
        self.log(run.name, "-", f"run {run.run_id} started by {event['name']}")
        for _ in range(MAX_CALLS_PER_RUN):
            status, reply = self._call(run, "step")  # a discovery call
            if status == 200:
                self.log(run.name, "-", f"200 done after {run.calls} calls -> {_short(reply)}")
                return reply
            for op in reply:
                finished, output = self._handle(run, op)
                if finished:
                    return output
        raise RunFailedError(f"{run.name}: no result after {MAX_CALLS_PER_RUN} calls")

    def _call(self, run: Run, step_id: str) -> tuple[int, Any]:
        """POST one execution request, retrying failed attempts (without backoff)."""
        for attempt in range(run.max_attempts):
            response = self.http.post(
                _with_step_id(run.url, step_id), json=_body(run, step_id, attempt)
            )
            run.calls += 1
            reply = _json(response)
            last = attempt + 1 >= run.max_attempts
            retry = f"retry {attempt + 2}/{run.max_attempts}"
            if response.status_code == 200:
                return 200, reply
            if response.status_code == 206:
                failed = [op for op in reply if op["op"] == "StepError"]
                if not failed:
                    return 206, reply
                op = failed[0]
                if last:  # the engine treats a StepError on the last attempt as final
                    op["op"] = "StepFailed"
                    return 206, reply
                self.log(run.name, op["displayName"], f"StepError {_error(op['error'])}; {retry}")
                continue
            what = f"{response.status_code} {_error(reply)}"
            if last or response.headers.get("x-inngest-no-retry") == "true":
                self.log(run.name, "-", f"{what}; run failed")
                raise RunFailedError(f"{run.name} failed: {_error(reply)}")
            self.log(run.name, "-", f"{what}; {retry}")
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _handle(self, run: Run, op: dict[str, Any]) -> tuple[bool, Any]:
        """Act on one reported op; returns ``(True, output)`` when the run is finished."""
        kind, step, opts = op["op"], op.get("displayName", "?"), op.get("opts") or {}
        if kind == "StepRun":
            self.log(run.name, step, f"StepRun -> {_short(op.get('data'))}")
            _memo(run, op["id"], {"data": op.get("data")})
        elif kind == "StepFailed":
            self.log(run.name, step, f"StepFailed {_error(op['error'])}")
            _memo(run, op["id"], {"error": op["error"]})
        elif kind == "Sleep":  # ``name`` holds the wake-up time
            until = dt.datetime.fromisoformat(op["name"].replace("Z", "+00:00"))
            seconds = max(0.0, (until - dt.datetime.now(dt.timezone.utc)).total_seconds())
            self.log(run.name, step, f"Sleep for {seconds:.1f}s (until {op['name']})")
            time.sleep(seconds)
            _memo(run, op["id"], None)
        elif kind == "WaitForEvent":  # ``name`` holds the event name
            self.log(run.name, step, f"WaitForEvent {op['name']} if {opts.get('if')}")
            time.sleep(WAIT_PAUSE_SECONDS)
            found = self.event_source(run.event, op)
            event = None if found is None else _event(found["name"], found.get("data") or {})
            got = (
                "timed out"
                if event is None
                else f"received {event['name']} {_short(event['data'])}"
            )
            self.log(run.name, step, got)
            _memo(run, op["id"], event)  # the raw event, not wrapped in {"data": ...}
        elif kind == "InvokeFunction":
            child_id, payload = opts["function_id"], opts.get("payload") or {}
            self.log(run.name, step, f"InvokeFunction {child_id}")
            invoked = _event("inngest/function.invoked", payload.get("data") or {})
            try:
                _memo(run, op["id"], {"data": self.run(child_id, invoked)})
            except RunFailedError as exc:
                _memo(run, op["id"], {"error": {"name": "Error", "message": str(exc)}})
        elif kind == "StepPlanned":  # run it in its own, targeted call
            self.log(run.name, step, f"StepPlanned -> targeted call stepId={op['id'][:10]}...")
            status, reply = self._call(run, op["id"])
            if status == 200:  # the function returned during the targeted call
                self.log(run.name, "-", f"200 done after {run.calls} calls -> {_short(reply)}")
                return True, reply
            for result in reply:
                self._handle(run, result)
        elif kind == "RunComplete":
            self.log(run.name, "-", f"RunComplete -> {_short(op.get('data'))}")
            return True, op.get("data")
        else:
            raise RunFailedError(f"{run.name}: the mini executor does not support {kind} ops")
        return False, None


def _body(run: Run, step_id: str, attempt: int) -> dict[str, Any]:
    """The execution request body (PROTOCOL.md §3.1)."""
    return {
        "event": run.event,
        "events": [run.event],
        "steps": run.memos,
        "ctx": {
            "run_id": run.run_id,
            "attempt": attempt,
            "max_attempts": run.max_attempts,
            "step_id": step_id,
            "stack": {"stack": run.stack, "current": len(run.stack)},
            # Force-plan is reset by every discovery call (request version 2) and
            # ignored by targeted ones, so a one-call-at-a-time executor never sets it.
            "disable_immediate_execution": False,
            "use_api": False,
        },
        "use_api": False,
        "version": 2,
    }


def _memo(run: Run, hashed_id: str, memo: Any) -> None:
    run.memos[hashed_id] = memo
    run.stack.append(hashed_id)


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    ts = int(time.time() * 1000)  # integer milliseconds, as SDKs require
    return {"name": name, "data": data, "id": uuid.uuid4().hex, "ts": ts, "user": {}}


def _with_step_id(url: str, step_id: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query)) | {"stepId": step_id}
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not an SDK answer (a proxy page, a crash): keep the text
        return {"name": f"HTTP {response.status_code}", "message": response.text[:200]}


def _error(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('name', 'Error')}: {error.get('message', '')}"
    return str(error)


def _short(value: Any, limit: int = 72) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
