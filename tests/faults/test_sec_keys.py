"""Keys, hostile numbers, sign-in guessing and database passwords.

* ``stepline start --signing-key signkey-prod-`` (an unset shell variable) or a key of two
  characters would start an engine whose sessions anyone could forge: weak signing,
  fallback and dashboard keys and empty event keys are refused at start, by the CLI (a
  real process) and by ``EngineSettings`` (what the embedded engine builds); the SDK
  refuses empty key material.
* A 5,000-digit session expiry or signature timestamp would make ``int()`` raise (a 500):
  it is a 401, as is one past a double's range.
* A delay per wrong dashboard key leaves parallel guesses free: failures are limited per
  client and overall (429 with ``Retry-After``), and the limit lifts by itself.
* A password given as ``?password=``, ``?sslpassword=`` or in a libpq keyword string is
  redacted in the banner, in errors and in the embedded engine's repr.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import stepline
import stepline.asgi
from stepline._comm.handler import CommHandler
from stepline._comm.messages import CommRequest
from stepline._errors import SignatureVerificationError
from stepline._protocol import signing
from stepline.embedded import EmbeddedEngine
from stepline.engine import Engine, EngineSettings
from stepline.engine._config import EngineConfigError, resolve
from stepline.engine._http.api import build_app
from stepline.engine._http.throttle import SignInLimiter, client_key
from stepline.engine._store.dsn import redact, scrub
from tests._support import refusing
from tests._support.databases import POSTGRES_URL, postgres_schema
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned

KEY = "signkey-prod-" + "7a" * 32
EVENT_KEY = "sec-keys-event-key"
DASHBOARD_KEY = "a dashboard passphrase"
MAKE = "python -c \"import secrets; print('signkey-prod-' + secrets.token_hex(32))\""


def _env(**extra: str) -> dict[str, str]:
    return clean_env(PYTHONIOENCODING="utf-8", **extra)


def _stepline(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        engine_command(*args),
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=cwd,
        timeout=60,
        check=False,
    )


# -- weak keys ---------------------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        pytest.param(
            ["--signing-key", "signkey-prod-"],
            {},
            "has no key material after its prefix 'signkey-prod-' (an unset shell variable?)",
            id="empty material",
        ),
        pytest.param(
            ["--signing-key", "signkey-prod-ab"],
            {},
            "is too short: 2 hex characters",
            id="2 characters",
        ),
        pytest.param(
            ["--signing-key", "signkey-prod-" + "ab" * 15],
            {},
            "is too short: 30 hex characters",
            id="30 characters",
        ),
        pytest.param(
            ["--signing-key", KEY, "--signing-key-fallback", "signkey-prod-"],
            {},
            "the signing key (--signing-key-fallback / STEPLINE_SIGNING_KEY_FALLBACK) has no",
            id="empty fallback",
        ),
        pytest.param(
            [],
            {"STEPLINE_SIGNING_KEY": "signkey-prod-"},
            "(--signing-key / STEPLINE_SIGNING_KEY) has no key material",
            id="empty key from the environment",
        ),
        pytest.param(
            ["--signing-key", KEY],
            {"STEPLINE_DASHBOARD_KEY": "letmein"},
            "a dashboard key (STEPLINE_DASHBOARD_KEY) has 7 characters; it needs at least 16",
            id="short dashboard key",
        ),
    ],
)
def test_stepline_start_refuses_weak_keys(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    db = tmp_path / "e.db"
    port = str(free_port())
    done = _stepline(
        "start", "--port", port, "--db", str(db), "--event-key", EVENT_KEY, *args, **env
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr, done.stderr
    assert "python -c" in done.stderr  # how to make a good one
    assert "Traceback" not in done.stderr
    assert not db.exists(), "refused before opening anything"


@pytest.mark.process
def test_stepline_start_refuses_an_empty_event_key(tmp_path: Path) -> None:
    done = _stepline(
        "start", "--db", str(tmp_path / "e.db"), "--signing-key", KEY, "--event-key", ""
    )
    assert done.returncode == 2
    assert "an event key (--event-key / STEPLINE_EVENT_KEY) is empty" in done.stderr


def test_engine_settings_refuse_weak_keys_however_built() -> None:
    weak: list[dict[str, Any]] = [
        {"signing_keys": ("signkey-prod-",)},
        {"signing_keys": ("signkey-prod-ab",)},
        {"signing_keys": ("ab",)},
        {"signing_keys": (KEY, "signkey-prod-1234")},
        {"signing_keys": (KEY,), "dashboard_keys": ("short",)},
        {"signing_keys": (KEY,), "dashboard_keys": ("",)},
        {"signing_keys": (KEY,), "event_keys": ("  ",)},
    ]
    for fields in weak:
        options = {"event_keys": (EVENT_KEY,), **fields}
        with pytest.raises(EngineConfigError, match=r"generate one with|is empty"):
            EngineSettings(mode="start", **options)
        with pytest.raises(EngineConfigError):
            EngineSettings(mode="dev", **options)  # a key given is a key checked, in any mode
    # 32 hex characters (128 bits) is the floor, with or without the prefix
    EngineSettings(mode="start", signing_keys=("ab" * 16,), event_keys=(EVENT_KEY,))
    EngineSettings(
        mode="start",
        signing_keys=("signkey-test-" + "ab" * 16, KEY),
        event_keys=(EVENT_KEY,),
        dashboard_keys=("x" * 16,),
    )
    with pytest.raises(EngineConfigError, match="too short"):
        resolve(
            mode="start",
            environ={"STEPLINE_SIGNING_KEY": "signkey-prod-00", "STEPLINE_EVENT_KEY": "e"},
        )


def test_a_production_embedded_engine_refuses_a_short_key(tmp_path: Path) -> None:
    client = stepline.Client(
        "weak", is_production=True, signing_key="signkey-prod-00ff", event_key="e", environ={}
    )
    embedded = EmbeddedEngine(client, [], database=str(tmp_path / "weak.db"))
    with pytest.raises(EngineConfigError, match="too short"):
        embedded.start()
    assert not embedded.running


@pytest.mark.parametrize("key", ["signkey-prod-", "signkey-test-"])
def test_the_sdk_refuses_empty_key_material(key: str) -> None:
    with pytest.raises(stepline.ConfigError, match="no key material"):
        stepline.Client("sdk", is_production=True, signing_key=key, environ={})
    with pytest.raises(stepline.ConfigError, match="no key material"):
        stepline.Client("sdk", is_production=True, environ={"STEPLINE_SIGNING_KEY": key})


# -- hostile numbers on the auth paths ----------------------------------------------------------


def _production(tmp_path: Path) -> Engine:
    settings = EngineSettings(
        mode="start",
        database_url=str(tmp_path / "p.db"),
        signing_keys=(KEY,),
        event_keys=(EVENT_KEY,),
        dashboard_keys=(DASHBOARD_KEY,),
    )
    return Engine(settings)


HUGE = ["9" * 5000, "1" + "0" * 400, "0" * 5000 + "1"]


def test_a_huge_session_expiry_is_a_401(tmp_path: Path) -> None:
    with TestClient(build_app(_production(tmp_path))) as http:
        for digits in HUGE:
            cookie = {"cookie": f"stepline_session={digits}.abcdef.{'0' * 64}"}
            answer = http.get("/v1/runs", headers=cookie)
            assert answer.status_code == 401, answer.text[:200]
            home = http.get("/", headers=cookie)
            assert home.status_code == 200
            assert 'name="key"' in home.text  # the sign-in form, not a 500


def test_a_huge_signature_timestamp_is_a_401() -> None:
    for digits in HUGE:
        header = f"t={digits}&s={'a' * 64}"
        with pytest.raises(SignatureVerificationError, match="out of range"):
            signing.verify(b"{}", header, [KEY], now=time.time())
    # through the SDK's handler, as an attacker would send it
    client = stepline.Client("hostile", is_production=True, signing_key=KEY, environ={})

    @client.function(id="f", trigger=stepline.TriggerEvent(event="x/y"))
    async def f(ctx: stepline.Context) -> None:
        return None

    handler = CommHandler(client=client, functions=[f], framework="asgi")
    try:
        for digits in HUGE:
            request = CommRequest.build(
                method="POST",
                url="http://app/api/inngest?fnId=hostile-f&stepId=step",
                headers={"x-inngest-signature": f"t={digits}&s={'a' * 64}"},
                body=b"{}",
            )
            response = handler.handle_sync(request)
            assert response.status == 401, response.body[:200]
    finally:
        handler.close()


# -- sign-in guessing ---------------------------------------------------------------------------


def test_wrong_dashboard_keys_are_limited_per_client_with_429(tmp_path: Path) -> None:
    app = build_app(_production(tmp_path))
    # no lifespan (no `with`): signing in needs the settings, not the running engine
    guesser = TestClient(app, client=("203.0.113.7", 50000))
    operator = TestClient(app, client=("198.51.100.2", 50001))
    started = time.monotonic()
    for n in range(5):
        wrong = guesser.post("/login", data={"key": f"guess {n}"}, follow_redirects=False)
        assert wrong.status_code == 303
        assert wrong.headers["location"] == "./?refused"
    # five tries: a delay a try of the usual size (a second) would take 5 s
    assert time.monotonic() - started < 2.5, "no per-request delay"
    limited = guesser.post("/login", data={"key": DASHBOARD_KEY}, follow_redirects=False)
    assert limited.status_code == 429  # even the right key: it is not even looked at
    assert 1 <= int(limited.headers["retry-after"]) <= 12
    assert "Too many wrong keys" in limited.text
    assert "stepline_session" not in limited.headers.get("set-cookie", "")
    # another client is not locked out by the guesser
    signed = operator.post("/login", data={"key": DASHBOARD_KEY}, follow_redirects=False)
    assert signed.status_code == 303
    assert "stepline_session=" in signed.headers["set-cookie"]


def test_the_limit_lifts_by_itself_and_has_a_global_ceiling() -> None:
    limiter = SignInLimiter(per_client=5, overall=20, window=60.0)
    now = 1000.0
    for _ in range(5):
        assert limiter.retry_after("a", now) == 0
        limiter.failed("a", now)
    assert limiter.retry_after("a", now) == pytest.approx(12.0)
    assert limiter.retry_after("a", now + 12.0) == 0  # one more try after 12 s: not forever
    limiter.failed("a", now + 12.0)
    assert limiter.retry_after("a", now + 12.0) > 0
    assert limiter.retry_after("a", now + 72.0) == 0
    limiter.succeeded("a")
    # many clients together hit the global ceiling; a new client then waits too, briefly
    for n in range(20):
        limiter.failed(f"bot{n}", now + 100.0)
    assert limiter.retry_after("fresh", now + 100.0) > 0
    assert limiter.retry_after("fresh", now + 104.0) == 0
    # an IPv6 client is one /64; an IPv4-mapped one is its IPv4 address
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "?"


# -- database passwords ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "secrets", "shown"),
    [
        ("postgresql://u:hunter22@db/x", ["hunter22"], "postgresql://u:***@db/x"),
        (
            "postgresql://u@db/x?password=hunter22&sslmode=require",
            ["hunter22"],
            "postgresql://u@db/x?password=***&sslmode=require",
        ),
        (
            "postgres://u@db/x?sslpassword=keypass99&application_name=a",
            ["keypass99"],
            "postgres://u@db/x?sslpassword=***&application_name=a",
        ),
        (
            "host=db user=u password=hunter22 dbname=x",
            ["hunter22"],
            "host=db user=u password=*** dbname=x",
        ),
        (
            "host=db password = 'hun ter\\'22' sslpassword=kp99xx",
            ["hun ter", "kp99xx"],
            "host=db password = *** sslpassword=***",
        ),
        (
            "postgresql://u:p%40ss%3Aw0rd@db/x",
            ["p%40ss%3Aw0rd", "p@ss:w0rd"],
            "postgresql://u:***@db/x",
        ),
    ],
)
def test_database_passwords_are_redacted_wherever_given(
    dsn: str, secrets: list[str], shown: str
) -> None:
    assert redact(dsn) == shown
    message = f"connection to {dsn} failed: bad password {secrets[-1]!s}"
    scrubbed = scrub(message, dsn)
    for secret in secrets:
        assert secret not in redact(dsn)
        assert secret not in scrubbed


@pytest.mark.process
def test_stepline_prints_no_database_password_given_in_the_query_or_as_keywords(
    tmp_path: Path,
) -> None:
    query = (
        f"postgresql://nobody@127.0.0.1:{refusing.port()}/x"
        "?password=pw-in-query&sslpassword=ssl-secret"
    )
    migrated = _stepline("migrate", "--db", query, cwd=tmp_path)
    assert migrated.returncode == 1
    assert "password=***" in migrated.stderr
    assert "sslpassword=***" in migrated.stderr
    dev = _stepline("dev", "--port", str(free_port()), "--db", query, cwd=tmp_path)
    assert dev.returncode == 2
    assert "password=***" in dev.stderr
    keywords = "host=127.0.0.1 port=1 user=nobody password=kw-secret dbname=x"
    refused = _stepline("migrate", "--db", keywords, cwd=tmp_path)
    assert refused.returncode == 2
    assert "give a URL instead: postgresql://" in refused.stderr
    started = _stepline(
        "start", "--db", keywords, "--signing-key", KEY, "--event-key", EVENT_KEY, cwd=tmp_path
    )
    assert started.returncode == 2
    assert "libpq keyword string" in started.stderr
    for done in (migrated, dev, refused, started):
        out = done.stdout + done.stderr
        for secret in ("pw-in-query", "ssl-secret", "kw-secret"):
            assert secret not in out, out
        assert "Traceback" not in out
    assert not list(tmp_path.iterdir()), "no SQLite file named after the keyword string"
    engine = EmbeddedEngine(
        stepline.Client("r", is_production=False), [], database=query.replace("nobody", "u")
    )
    assert "pw-in-query" not in repr(engine)
    assert "ssl-secret" not in repr(engine)


@pytest.mark.postgres
@pytest.mark.process
def test_the_banner_redacts_a_password_in_the_query(tmp_path: Path) -> None:
    with postgres_schema() as url:
        assert "?" in url  # the schema's search_path option
        with_password = f"{url}&password=banner-secret"
        port = free_port()
        log = tmp_path / "engine.log"
        command = engine_command(
            "dev", "--port", str(port), "--db", with_password, "--db-pool-size", "2"
        )

        def banner() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            return "Database" in log.read_text(errors="replace")

        with spawned(command, log=log, env=_env()) as proc:
            wait_until(banner, timeout=30, interval=0.05, message="the banner")
        text = log.read_text(errors="replace")
        assert "password=***" in text
        assert "banner-secret" not in text
    assert POSTGRES_URL
