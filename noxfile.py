"""The Python-version matrix: the fast tier on every supported Python but 3.11.

`make test` runs the whole suite on 3.11 (the project's `.venv`); the sessions here run the
tests that need no process, browser or database server on 3.10, 3.12 and 3.13, each in a
fresh venv of nox's with the package and its `dev` extra installed (`make test-versions`,
which CI runs after `make test`; nox runs the sessions one after another).

On 3.12, where pip installs Django 6, the Django Tasks backend's process tests and the
blocks of docs/django-tasks.md run too, on ``django.tasks`` itself.

The interpreters are pyenv's: their bin directories go first on PATH, so nox finds the real
`python3.X` rather than a pyenv shim (a shim runs only the version pyenv has selected).
Packages come from pip's own configuration (its config files and `PIP_*` variables), which
the venvs' pip reads as the project venv's does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

# 3.11 is the project venv's, where `make test` runs the whole suite.
FAST_VERSIONS = ["3.10", "3.12", "3.13"]
# The fast tier: no process, browser or database server (tests/_support/tiers.py).
FAST_TIER = ["--tier", "fast"]

nox.options.sessions = ["fast"]
nox.options.error_on_missing_interpreters = True


def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if root:
        return Path(root)
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def _put_pyenv_pythons_on_path() -> None:
    """Prepend, for each X.Y of the matrix, the bin dir of pyenv's newest X.Y.Z."""
    root = _pyenv_root()
    if root is None or not (root / "versions").is_dir():
        return
    installed = sorted(
        (d for d in (root / "versions").iterdir() if (d / "bin").is_dir()),
        key=lambda d: _version_key(d.name),
    )
    bins: list[str] = []
    for version in FAST_VERSIONS:
        matching = [d for d in installed if d.name.startswith(version + ".")]
        if matching and (matching[-1] / "bin" / f"python{version}").exists():
            bins.append(str(matching[-1] / "bin"))
    os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_put_pyenv_pythons_on_path()


def _install(session: nox.Session) -> None:
    session.install("--quiet", "--upgrade", "pip")
    session.install("--quiet", "-e", ".[dev]")


#: Where Django 6.1 (which needs Python 3.12) replaces the 5.2 the dev extra installs: the
#: fast tier runs on it there, and the Django Tasks backend also runs its process tests on
#: Django's own ``django.tasks`` (the whole suite, on 3.11, runs them on Django 5.2 with the
#: ``django_tasks`` backport).
DJANGO_6 = "3.12"
DJANGO_6_PIN = "django~=6.1.0"
DJANGO_TASKS_TESTS = "tests/django_tasks_backend"
#: docs/django-tasks.md's blocks, which say they run on both
DJANGO_TASKS_DOCS = "tests/docs/test_blocks.py::test_blocks_run[docs/django-tasks.md]"


@nox.session(python=FAST_VERSIONS)
def fast(session: nox.Session) -> None:
    """The fast tier on one Python (extra arguments go to pytest)."""
    _install(session)
    if session.python == DJANGO_6:
        session.install("--quiet", DJANGO_6_PIN)
        session.run(
            "python", "-c", "import django, django.tasks; print('Django', django.__version__)"
        )
    session.run(
        "pytest",
        "-n",
        "2",
        "--dist",
        "loadfile",
        "--no-loadscope-reorder",
        *FAST_TIER,
        *session.posargs,
    )
    if session.python == DJANGO_6 and not session.posargs:
        session.run("pytest", "-p", "no:randomly", DJANGO_TASKS_TESTS, "-m", "process")
        session.run("pytest", "-p", "no:randomly", DJANGO_TASKS_DOCS)
