"""Install the built wheel in fresh venvs, one extra at a time, and check what a user would.

    python tools/check_installs.py [--cache DIR] [EXTRA ...]     (EXTRA: base flask fastapi ...
                                                                   or missing-engine)

For every install: ``stepline dev`` starts, answers ``/ready`` and exits 0 on SIGTERM; a
``flask`` install's ``serve(..., engine="embedded")`` succeeds. The
``missing-engine`` venv holds the wheel without Starlette and uvicorn (``--no-deps`` plus the
SDK's own dependencies): ``stepline dev`` must print ONE line naming
``pip install 'stepline[engine]'`` and exit 2, and ``serve(..., engine="embedded")`` must raise
one ``ConfigError`` line saying the same, never a traceback or a crashed engine thread.

Venvs are cached under ``--cache`` by the wheel's hash (a second run takes seconds).
``tests/test_installs.py`` runs ``flask`` and ``missing-engine``; run every extra
here before a release.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("base", "flask", "fastapi", "django", "tornado", "aiohttp", "engine", "postgres")
#: the SDK's own dependencies (pyproject's, without the engine's serving packages)
SDK_DEPS = ("httpx>=0.27", "sniffio>=1.3", "pydantic>=2.6", "typing-extensions>=4.10")
ONE_LINE = "pip install 'stepline[engine]'"

FLASK_EMBEDDED = """
import flask, stepline, stepline.flask
client = stepline.Client(app_id="probe", is_production=False)
@client.function(id="hello", trigger=stepline.TriggerEvent(event="probe/hello"))
def hello(ctx):
    return ctx.step.run("s", lambda: "hi")
app = flask.Flask(__name__)
try:
    stepline.flask.serve(app, client, [hello], engine="embedded", database=r"{db}")
except stepline.ConfigError as exc:
    print("ConfigError:", exc)
    raise SystemExit(3)
print("served")
"""


def build_wheel(out: Path) -> Path:
    """Build the project's wheel into ``out`` (no dependencies); return its path."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("stepline-*.whl"):
        old.unlink()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
    )
    (wheel,) = out.glob("stepline-*.whl")
    return wheel


def venv(cache: Path, wheel: Path, extra: str) -> Path:
    """A venv with ``wheel`` installed for ``extra`` (cached by the wheel's content)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
    home = cache / f"{extra}-{digest}"
    python = home / "bin" / "python"
    if (home / "ok").exists():
        return python
    # no pip of its own (ensurepip takes seconds): this interpreter's pip installs into it
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", "--without-pip", str(home)], check=True
    )
    quiet = ("-q", "--disable-pip-version-check")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", *quiet]
    if extra == "missing-engine":
        subprocess.run([*pip, *SDK_DEPS, "flask>=2.3"], check=True)
        subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    else:
        spec = str(wheel) if extra == "base" else f"stepline[{extra}] @ {wheel.as_uri()}"
        subprocess.run([*pip, spec], check=True)
    (home / "ok").write_text(digest)
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_dev(python: Path, work: Path) -> str | None:
    """``stepline dev`` starts, is ready, and exits 0 on SIGTERM; the problem otherwise."""
    port = _free_port()
    stepline = python.parent / "stepline"
    log = work / f"dev-{port}.log"
    command = [str(stepline), "dev", "--port", str(port), "--db", str(work / f"{port}.db")]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                return f"stepline dev exited with {proc.returncode}: {log.read_text()[-800:]}"
            ready = f"http://127.0.0.1:{port}/ready"
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=1) as r:
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                return f"stepline dev never became ready: {log.read_text()[-800:]}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        return None if code == 0 else f"stepline dev exited {code} on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_missing(python: Path, work: Path) -> str | None:
    """Without the engine's packages: one line and exit 2, at the CLI and at ``serve()``."""
    stepline = python.parent / "stepline"
    done = subprocess.run(
        [str(stepline), "dev"], capture_output=True, text=True, cwd=work, check=False
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 2 or len(lines) != 1 or ONE_LINE not in lines[0]:
        return f"stepline dev without the engine: exit {done.returncode}, output {lines!r}"
    script = FLASK_EMBEDDED.format(db=work / "embedded.db")
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, cwd=work, check=False
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 3 or len(lines) != 1 or ONE_LINE not in lines[0]:
        return f"serve(engine='embedded') without the engine: exit {done.returncode}, {lines!r}"
    return None


def check_embedded(python: Path, work: Path) -> str | None:
    """With flask: ``serve(..., engine="embedded")`` succeeds."""
    script = FLASK_EMBEDDED.format(db=work / "embedded.db")
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, cwd=work, check=False
    )
    if done.returncode != 0 or "served" not in done.stdout:
        return f"serve(engine='embedded'): exit {done.returncode}: {done.stderr[-800:]}"
    return None


def check(extra: str, cache: Path, wheel: Path) -> list[str]:
    """Every problem found in a fresh install for ``extra``."""
    python = venv(cache, wheel, extra)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if extra == "missing-engine":
            found = [check_missing(python, work)]
        else:
            found = [check_dev(python, work)]
            if extra == "flask":
                found.append(check_embedded(python, work))
    return [f"{extra}: {p}" for p in found if p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", default=[*EXTRAS, "missing-engine"])
    default = Path(tempfile.gettempdir()) / "stepline-install-venvs"
    parser.add_argument("--cache", type=Path, default=default)
    args = parser.parse_args(argv)
    wheel = build_wheel(args.cache / "wheel")
    problems = []
    for extra in args.extras:
        started = time.monotonic()
        found = check(extra, args.cache, wheel)
        problems += found
        state = "ok" if not found else "FAILED"
        print(f"{extra:16} {state} ({time.monotonic() - started:.1f} s)", flush=True)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.pop("STEPLINE_DATABASE_URL", None)
    raise SystemExit(main())
