"""An earlier Stepline release, run from its own source beside today's.

The release is the newest commit that set ``VERSION`` in ``src/stepline/_identity.py``
and knows fewer schema migrations than today's code: what an operator upgrading from the
last release has. Its ``src`` is taken from git (``git archive``) and run with
``PYTHONPATH`` pointing at it, ahead of the venv's editable install of today's code, with
the venv's dependencies (a release's dependencies are today's or older, and the tests
here would fail loudly if one were missing).
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).parents[2]
IDENTITY = "src/stepline/_identity.py"
_COUNT = (
    "from stepline.engine._store import sqlite_schema as s, postgres_schema as p; "
    "import stepline._identity as i; print(len(s.MIGRATIONS), len(p.MIGRATIONS), i.VERSION)"
)


@dataclasses.dataclass(frozen=True)
class Release:
    """An earlier release's source, extracted."""

    commit: str
    version: str
    src: Path
    #: its newest schema version on SQLite and on Postgres
    sqlite_schema: int
    postgres_schema: int

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with this release's code first on the path."""
        return {**env, "PYTHONPATH": str(self.src)}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout


def counts(src: Path) -> tuple[int, int, str]:
    """The SQLite and Postgres migration counts and version of the code under ``src``."""
    out = subprocess.run(
        [sys.executable, "-c", _COUNT],
        env={**os.environ, "PYTHONPATH": str(src)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1]), out[2]


def previous(into: Path) -> Release:
    """The last release before today's schema, extracted under ``into``.

    Raises:
        LookupError: git or the repository's history is not there (a source archive),
            or no release knows fewer migrations than today's code.
    """
    try:
        commits = _git("log", "--format=%H", "-G", "^VERSION = ", "--", IDENTITY).split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LookupError(f"no git history at {ROOT}: {exc}") from exc
    today = counts(ROOT / "src")
    for commit in commits:
        src = into / commit[:12] / "src"
        if not src.exists():
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", commit, "src"],
                check=True,
                capture_output=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(src.parent, filter="data")
        sqlite, postgres, version = counts(src)
        if sqlite < today[0] and postgres < today[1]:
            return Release(commit, version, src, sqlite, postgres)
    raise LookupError(f"no release in {len(commits)} version commits knows fewer migrations")
