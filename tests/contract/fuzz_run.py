"""REST v1 fuzzed against its own OpenAPI document, on a live ``stepline start``: the run
``test_fuzz_sqlite.py`` and ``test_fuzz_postgres.py`` each make on their store (one file a
store, so that xdist's workers take them side by side).

Schemathesis (its CLI, in a child process) reads ``GET /v1/openapi.json`` from an engine
started as production starts it (signing key, bearer auth) on SQLite and on a fresh
Postgres schema, and sends every operation generated requests, valid and invalid (its
coverage and fuzzing phases), then follows the document's links (start a run, then
read, cancel, replay it; start a bulk action, then read and stop it). Every answer must
be below 500 and conform to the document: its status listed, its content type and body
as declared. A function is registered first (its app's URL refuses connections) so the
links reach real runs. The figures are SECURITY.md's ("REST v1 contract").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from stepline._protocol import signing
from tests._support.databases import database
from tests._support.processes import clean_env, engine_command, free_port, log_tail, spawned

SIGNING_KEY = "signkey-prod-" + "c0ffee00" * 8
#: examples per operation and phase, by store: each run well within a minute alone on a
#: 2-core machine (SQLite 15: some 2,900 cases; Postgres answers slower, 10: some 2,600).
#: The coverage phase's boundary cases do not depend on it; twice as many examples took
#: 40-60% longer and found nothing more (SECURITY.md, "REST v1 contract")
MAX_EXAMPLES = {"sqlite": 15, "postgres": 10}
SEED = 20261127
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
ROOT = Path(__file__).resolve().parents[2]
#: an app whose URL refuses connections: its runs exist, retry and stay live
APP = {
    "url": "http://127.0.0.1:9/api/inngest",
    "appName": "fuzz",
    "framework": "test",
    "sdk": "py:test",
    "v": "0.1",
    "deployType": "ping",
    "functions": [
        {
            "id": "fuzz-fn",
            "name": "fn",
            "triggers": [{"event": "fuzz/x"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": "http://127.0.0.1:9/api/inngest"},
                }
            },
        }
    ],
}


def _st() -> str:
    return str(Path(sys.executable).with_name("st"))


def conforms(store: str, tmp_path: Path) -> None:
    """Schemathesis' run on ``store`` ("sqlite" or "postgres"): no failure, every operation.

    Prints the figures (cases, failing, seconds) that SECURITY.md quotes.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": signing.bearer_token(SIGNING_KEY)}
    log = tmp_path / "engine.log"
    with database(store, tmp_path) as url:
        command = engine_command(
            "start", "--port", str(port), "--db", url, "--signing-key", SIGNING_KEY,
            "--event-key", "fuzz-event-key", "--connect-gateway-port", "0",
        )  # fmt: skip
        with spawned(command, log=log, env=clean_env(), up=f"{base}/health"):
            registered = httpx.post(f"{base}/fn/register", json=APP, headers=auth, timeout=10)
            assert registered.status_code == 200, registered.text
            report = tmp_path / "report.json"
            options = {
                "--header": f"Authorization: {auth['authorization']}",
                "--max-examples": str(MAX_EXAMPLES[store]),
                "--seed": str(SEED),
                "--mode": "all",
                "--checks": ",".join(CHECKS),
                "--workers": "1",  # hypothesis reads lambdas' source racily across threads
                "--request-timeout": "10",
                "--report": "json",
                "--report-json-path": str(report),
            }
            done = subprocess.run(
                [_st(), "run", f"{base}/v1/openapi.json", "--no-color"]
                + [part for pair in options.items() for part in pair],
                capture_output=True,
                text=True,
                cwd=tmp_path,  # schemathesis keeps a cache in its working directory
                env=clean_env(SCHEMATHESIS_HOOKS="tests.contract.fuzz_hooks", PYTHONPATH=str(ROOT)),
                timeout=420,
                check=False,
            )
    figures = json.loads(report.read_text())
    cases = figures["test_cases"]
    print(f"schemathesis on {store}: {cases['generated']} cases, {cases['with_failures']} "
          f"failing, in {figures['running_time']:.1f} s")  # fmt: skip
    found = done.stdout[done.stdout.find("=====") :]  # the failures and errors, then the summary
    assert done.returncode == 0, f"{found[:12000]}\n{done.stderr[-2000:]}\n{log_tail(log, 1500)}"
    assert cases["with_failures"] == 0
    assert cases["errored"] == 0
    assert figures["operations"]["tested"] == figures["operations"]["total"]
    assert cases["generated"] >= 70 * MAX_EXAMPLES[store], cases  # every phase ran
    assert all(phase["status"] == "success" for name, phase in figures["phases"].items()
               if name != "examples"), figures["phases"]  # fmt: skip
