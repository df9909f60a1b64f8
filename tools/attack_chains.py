"""Replay the attack chains of SECURITY.md's review against real processes; each must fail.

    .venv/bin/python tools/attack_chains.py        (from the repository root)

Starts ``python -m stepline.engine start`` and ``... dev`` on free ports with temporary
SQLite files, a signed FastAPI app (``tools/_attack_apps.py``) under a real ``uvicorn``
process, and scripted loopback servers (``tests/faults/sec_servers.py``), then attacks:

* Host-header hijack: unsigned ``PUT``s to the production app with a forged ``Host`` (and
  a body naming the attacker), plus an unsigned ``/fn/register`` naming the attacker; the
  app's registered URL must not move (a control run still completes at the old URL);
* a registered URL answering unsigned 206s with an ``AIGateway`` op to a loopback
  "metadata" server, and the same answer signed (the gateway's allow-list at its default
  must deny loopback): the victim must see no request and nothing of it reach the app;
* a signed 200 MB streamed answer: the run must fail and the engine's peak RSS (``VmHWM``
  of its process) grow by less than 48 MiB;
* ``stepline start --signing-key signkey-prod-`` and ``signkey-prod-ab``: exit non-zero
  with a message, no traceback, no database created;
* a 5,000-digit session cookie on ``/v1/runs``, ``/v1/apps`` and ``/dev``, and a 5,000-digit
  signature timestamp to the app: 401 each;
* ``stepline dev``: ``POST /fn/register`` as ``text/plain`` from a foreign ``Origin``, and
  requests with a foreign ``Host`` (DNS rebinding): 403 each, nothing registered (a JSON
  registration without either is the control, and works).

Prints one line per chain, PASS (the attack failed) or FAIL, and exits 0 only if every
chain failed. On a FAIL the processes' logs are kept and their directory printed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._support.processes import (  # noqa: E402
    answers,
    clean_env,
    engine_command,
    free_port,
    spawn,
    stop,
    wait_until_up,
)
from tests.faults.sec_servers import (  # noqa: E402
    SDK,
    Scripted,
    chunks,
    gateway_op,
    json_answer,
    register_body,
    steps_of,
)

from stepline._protocol import signing  # noqa: E402

KEY = "signkey-prod-" + secrets.token_hex(32)
EVENT_KEY = "attack-" + secrets.token_hex(8)
AUTH = {"authorization": signing.bearer_token(KEY)}
HUGE = "9" * 5000
ENDED = ("Completed", "Failed", "Cancelled")
BIG = 200 * 1024 * 1024
MiB = 1024 * 1024
RESULTS: list[bool] = []


def report(chain: str, ok: bool, observed: str) -> None:
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {chain}: {observed}", flush=True)


def chain(name: str, attack: Callable[[], tuple[bool, str]]) -> None:
    """Run one attack; a crash of the replay itself is a FAIL (nothing was shown)."""
    try:
        ok, observed = attack()
    except Exception as error:
        traceback.print_exc()
        ok, observed = False, f"the replay broke: {type(error).__name__}: {error}"
    report(name, ok, observed)


# -- processes and engine calls -----------------------------------------------------------------


class Proc:
    """A child process, waited for until ``up`` answers; its output goes to ``log``."""

    def __init__(self, command: list[str], log: Path, up: str, **env: str) -> None:
        self.log = log
        self.proc = spawn(command, log=log, env=clean_env(**env), cwd=ROOT)
        try:
            wait_until_up(up, self.proc, log=log, ready=answers, what=log.stem)
        except BaseException:
            stop(self.proc)
            raise

    def peak_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def close(self) -> None:
        stop(self.proc)


def engine(tmp: Path, mode: str) -> tuple[Proc, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = engine_command(mode, "--port", str(port), "--db", str(tmp / f"{mode}.db"))
    keys = {"STEPLINE_SIGNING_KEY": KEY, "STEPLINE_EVENT_KEY": EVENT_KEY} if mode == "start" else {}
    return Proc(command, tmp / f"engine-{mode}.log", f"{base}/health", **keys), base


def register(base: str, url: str, fn: str, *events: str) -> None:
    body = register_body(url, fn_id=fn, attempts=0)  # one attempt: no retry back-off
    body["appName"] = fn
    body["functions"][0]["triggers"] = [{"event": e} for e in events]
    answer = httpx.post(f"{base}/fn/register", json=body, headers=AUTH, timeout=30)
    answer.raise_for_status()


def run_of(base: str, event: str, timeout: float = 90) -> dict[str, Any]:
    sent = httpx.post(f"{base}/e/{EVENT_KEY}", json={"name": event, "data": {}}, timeout=10)
    sent.raise_for_status()
    event_id = sent.json()["ids"][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.get(f"{base}/v1/events/{event_id}/runs", headers=AUTH, timeout=10)
        runs = found.json()["data"]
        if runs and runs[0]["status"] in ENDED:
            return dict(runs[0])
        time.sleep(0.1)
    raise TimeoutError(f"no run of {event} ended within {timeout}s")


def error_name(output: Any) -> str:
    return str(output.get("name")) if isinstance(output, dict) else repr(output)[:80]


def registered(base: str) -> tuple[dict[str, str], set[str]]:
    """Each app's URL, and every URL a function is called at (without its query)."""
    apps = httpx.get(f"{base}/v1/apps", headers=AUTH, timeout=10).json()["data"]
    fns = httpx.get(f"{base}/v1/functions", headers=AUTH, timeout=10).json()["data"]
    urls = {urllib.parse.urlsplit(f["config"]["url"])._replace(query="").geturl() for f in fns}
    return {a["app_id"]: a["url"] for a in apps}, urls


# -- the chains ---------------------------------------------------------------------------------


def host_hijack(base: str, tmp: Path) -> tuple[bool, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/inngest"
    command = [sys.executable, "-m", "uvicorn", "_attack_apps:app", "--app-dir", "tools"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = {"ATTACK_ENGINE_URL": base, "ATTACK_SIGNING_KEY": KEY, "ATTACK_EVENT_KEY": EVENT_KEY}
    app = Proc(command, tmp / "victim-app.log", url, **env)
    try:
        synced = httpx.post(f"{base}/v1/apps/sync", json={"url": url}, headers=AUTH, timeout=30)
        if synced.status_code != 200 or not synced.json()["data"]["ok"]:
            return False, f"setup: the engine's signed sync failed: {synced.text[:200]}"
        before = registered(base)
        with Scripted() as attacker:
            evil = f"{attacker.url}/api/inngest"
            statuses = []
            for host in (f"127.0.0.1:{attacker.port}", "evil.example:6666"):
                for body in (None, {"url": evil}):
                    put = httpx.put(url, headers={"host": host}, json=body, timeout=30)
                    statuses.append(put.status_code)
            # the other way in: registering the attacker's URL straight with the engine
            forged = register_body(attacker.url, fn_id="victim-one")
            forged["appName"] = "victim"
            direct = httpx.post(f"{base}/fn/register", json=forged, timeout=30).status_code
            after = registered(base)
            probes = len(attacker.requests)
        control = run_of(base, "victim/one")
        # a 5,000-digit signature timestamp to the signed app (SECURITY.md, finding 9): a 401
        stamp = {"x-inngest-signature": f"t={HUGE}&s={'a' * 64}"}
        huge = httpx.post(f"{url}?fnId=victim-one&stepId=step", content=b"{}", headers=stamp)
    finally:
        app.close()
    moved = after != before
    ok = not moved and probes == 0 and direct == 401 and control["status"] == "Completed"
    ok = ok and all(s == 401 for s in statuses)
    report(
        "5,000-digit X-Inngest-Signature timestamp to the signed app",
        huge.status_code == 401,
        f"POST -> {huge.status_code} (want 401)",
    )
    return ok, (
        f"forged-Host PUTs -> {statuses}; unsigned /fn/register naming the attacker -> {direct};"
        f" registered URL moved: {moved} ({after[0].get('victim')}); attacker hits {probes};"
        f" control run at the old URL: {control['status']}"
    )


def gateway(base: str) -> tuple[bool, str]:
    secret = b'{"secret": "metadata-token-0451"}'
    with Scripted(lambda _r: (200, {}, secret)) as victim:

        def attack(key: str | None) -> Callable[[dict[str, Any]], Any]:
            def answer(request: dict[str, Any]) -> Any:
                memo = steps_of(request).get("ai")
                if memo is None:
                    op = gateway_op(f"{victim.url}/latest/meta-data")
                    return json_answer(206, [op], key=key)
                return json_answer(200, {"stolen": memo}, key=key)

            return answer

        with Scripted(attack(None)) as unsigned, Scripted(attack(KEY)) as signed:
            register(base, unsigned.url, "atk-unsigned", "attack/unsigned")
            register(base, signed.url, "atk-signed", "attack/signed")
            first = run_of(base, "attack/unsigned")
            second = run_of(base, "attack/signed")
            calls = (len(unsigned.requests), len(signed.requests))
        hits = len(victim.requests)
    leaked = "metadata-token" in str(first.get("output")) + str(second.get("output"))
    stolen = second.get("output")
    memo = stolen.get("stolen") if isinstance(stolen, dict) else None
    refusal = error_name(memo.get("error")) if isinstance(memo, dict) else repr(memo)[:80]
    ok = hits == 0 and not leaked and first["status"] == "Failed"
    return ok, (
        f"unsigned 206 -> run {first['status']} ({error_name(first.get('output'))});"
        f" signed 206 -> run {second['status']}, the gateway step got {refusal};"
        f" loopback victim hit {hits} times; secret leaked: {leaked}; app calls {calls}"
    )


def signed_stream(total: int, now: float) -> tuple[str, Iterator[bytes]]:
    """The signature of ``chunks(total)``, computed a chunk at a time, and the chunks."""
    mac = hmac.new(signing.strip_key_prefix(KEY).encode(), digestmod=hashlib.sha256)
    for part in chunks(total):
        mac.update(part)
    stamp = str(int(now))
    mac.update(stamp.encode())
    return f"t={stamp}&s={mac.hexdigest()}", chunks(total)


def big_answer(base: str, proc: Proc) -> tuple[bool, str]:
    sent = [0]

    def answer(request: dict[str, Any]) -> Any:
        if b"big/warm" in request["raw"]:
            return json_answer(200, "warm", key=KEY)
        header, body = signed_stream(BIG, time.time())

        def counted() -> Iterator[bytes]:
            for part in body:
                sent[0] += len(part)
                yield part

        headers = {**SDK, "content-type": "application/json", "x-inngest-signature": header}
        return 200, headers, counted()

    with Scripted(answer) as app:
        register(base, app.url, "atk-big", "big/warm", "big/go")
        warm = run_of(base, "big/warm")
        before = proc.peak_kib()
        started = time.monotonic()
        run = run_of(base, "big/go", timeout=120)
        took = time.monotonic() - started
        after = proc.peak_kib()
    grown = after - before
    ok = warm["status"] == "Completed" and run["status"] == "Failed" and grown < 48 * 1024
    return ok, (
        f"signed 200 MiB answer -> run {run['status']} ({error_name(run.get('output'))})"
        f" in {took:.1f}s; app got ~{sent[0] // MiB} MiB out before the hang-up;"
        f" engine VmHWM {before // 1024} MiB -> {after // 1024} MiB (+{grown // 1024}, limit 48)"
    )


def weak_key(tmp: Path, key: str) -> tuple[bool, str]:
    db = tmp / f"weak-{len(key)}.db"
    command = engine_command("start", "--port", str(free_port()), "--db", str(db))
    command += ["--signing-key", key, "--event-key", EVENT_KEY]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=clean_env(), timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return False, "the engine STARTED with this key (still running after 30 s; killed)"
    said = next((line for line in done.stderr.splitlines() if "key" in line), done.stderr[-200:])
    tb = "Traceback" in done.stderr
    ok = done.returncode != 0 and not tb and not db.exists()
    extra = "; TRACEBACK" if tb else ""
    return ok, f"exit {done.returncode}{extra}, db created: {db.exists()}; said: {said.strip()}"


def huge_cookie(base: str) -> tuple[bool, str]:
    cookie = {"cookie": f"stepline_session={HUGE}.abcdef.{'0' * 64}"}
    paths = ("/v1/runs", "/v1/apps", "/dev")
    got = {p: httpx.get(f"{base}{p}", headers=cookie).status_code for p in paths}
    return all(s == 401 for s in got.values()), f"{got} (want 401 each)"


def dev_mode(tmp: Path) -> None:
    proc, base = engine(tmp, "dev")
    try:
        port = base.rsplit(":", 1)[1]
        forged = register_body("http://attacker.example", fn_id="dev-forged")
        forged["appName"] = "forged"
        body = httpx.Request("POST", "http://x", json=forged).content
        cross = httpx.post(
            f"{base}/fn/register",
            content=body,
            headers={"content-type": "text/plain;charset=UTF-8", "origin": "http://evil.example"},
        ).status_code
        hosts = {}
        for host in (f"evil.example:{port}", "evil.example"):
            hosts[f"GET /v1/apps Host {host}"] = httpx.get(
                f"{base}/v1/apps", headers={"host": host}
            ).status_code
        json_rebound = {"host": f"evil.example:{port}", "content-type": "application/json"}
        hosts["POST /fn/register (JSON) Host evil.example"] = httpx.post(
            f"{base}/fn/register", content=body, headers=json_rebound
        ).status_code
        kept = httpx.get(f"{base}/v1/apps").json()["data"]
        legit = register_body("http://127.0.0.1:9", fn_id="dev-control")
        control = httpx.post(f"{base}/fn/register", json=legit).status_code
    finally:
        proc.close()
    report(
        "dev: text/plain POST /fn/register from Origin http://evil.example",
        cross == 403 and kept == [] and control == 200,
        f"-> {cross} (want 403); apps registered after: {len(kept)};"
        f" control JSON registration without Origin -> {control}",
    )
    report(
        "dev: foreign Host (DNS rebinding)",
        all(s == 403 for s in hosts.values()) and kept == [],
        f"{hosts} (want 403 each); apps registered after: {len(kept)}",
    )


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="attack-chains-"))
    started = time.monotonic()
    for key in ("signkey-prod-", "signkey-prod-ab"):
        chain(f"stepline start --signing-key {key}", lambda key=key: weak_key(tmp, key))
    try:
        dev_mode(tmp)
    except Exception as error:
        traceback.print_exc()
        report("dev mode", False, f"the replay broke: {error}")
    proc, base = engine(tmp, "start")
    try:
        chain("5,000-digit session cookie", lambda: huge_cookie(base))
        chain("Host-header hijack of a signed app behind uvicorn", lambda: host_hijack(base, tmp))
        chain("unsigned 206 with an AIGateway op to loopback", lambda: gateway(base))
        chain("200 MiB answer, engine peak RSS watched", lambda: big_answer(base, proc))
    finally:
        proc.close()
    failed = RESULTS.count(False)
    took = time.monotonic() - started
    print(f"{len(RESULTS) - failed}/{len(RESULTS)} attack chains refused in {took:.0f}s")
    if failed:
        print(f"FAILED: {failed}; logs kept in {tmp}")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
