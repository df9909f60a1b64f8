"""The peers' own virtualenv, ``bench/.peers-venv``: DBOS, the official ``inngest`` SDK and
Pydantic AI (its DBOS agent, for ``ai_bench.py``).

The peers are pinned and installed from PyPI with pip into a virtualenv of their own, so
their dependencies (SQLAlchemy, psycopg, OpenTelemetry...) never touch stepline's
environment and a fresh machine needs nothing but Python and network access. The venv
is created once and reused while its stamp file lists the same pins; delete the folder
(or pass ``--rebuild``) to start over.

Run: ``.venv/bin/python bench/_peers.py [--rebuild]`` prints the venv's python path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".peers-venv"
#: DBOS and inngest, Pydantic AI for ``ai_bench.py``'s DBOS agent, and the web stack
#: ``endpoint_bench.py`` serves DBOS's FastAPI app with: the versions stepline's venv runs
#: (uvicorn picks up httptools and uvloop there too).
REQUIREMENTS = (
    "dbos==3.4.0",
    "inngest==0.5.19",
    "pydantic-ai-slim==2.68.0",
    "fastapi==0.165.0",
    "uvicorn==0.54.0",
    "httptools==0.9.0",
    "uvloop==0.23.0; sys_platform != 'win32'",
)
STAMP = VENV / ".stepline-peers"


def python_path(root: Path = VENV) -> Path:
    """The venv's interpreter (``bin/python``, or ``Scripts/python.exe`` on Windows)."""
    if os.name == "nt":
        return root / "Scripts" / "python.exe"
    return root / "bin" / "python"


def _stamp_text() -> str:
    return "\n".join(REQUIREMENTS) + "\n"


def ready() -> bool:
    """True if the venv exists with exactly the pinned peers installed."""
    return python_path().exists() and STAMP.exists() and STAMP.read_text() == _stamp_text()


def ensure(*, rebuild: bool = False, quiet: bool = False) -> Path:
    """Create (or reuse) the peers' venv and return its python.

    Args:
        rebuild: delete the venv first and install afresh.
        quiet: no progress line when the venv is reused.

    Raises:
        SystemExit: pip failed (its output is shown).
    """
    if rebuild and VENV.exists():
        shutil.rmtree(VENV)
    if ready():
        if not quiet:
            print(f"peers: reusing {_shown(VENV)} ({', '.join(REQUIREMENTS)})", file=sys.stderr)
        return python_path()
    start = time.monotonic()
    print(
        f"peers: installing {', '.join(REQUIREMENTS)} from PyPI into {_shown(VENV)} "
        "(once; about a minute)...",
        file=sys.stderr,
        flush=True,
    )
    if VENV.exists():
        shutil.rmtree(VENV)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    python = python_path()
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    for command in (
        [*pip, "install", "--upgrade", "pip"],
        [*pip, "install", *REQUIREMENTS],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(
                f"peers: `{' '.join(command[2:])}` failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )
    STAMP.write_text(_stamp_text())
    print(f"peers: ready in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return python


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="delete and recreate the venv")
    args = parser.parse_args(argv)
    print(ensure(rebuild=args.rebuild))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
