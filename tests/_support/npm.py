"""A test-support folder's npm packages, installed from its committed lock on first use.

A folder in the repository holds a ``package.json`` and its ``package-lock.json``; its
``node_modules`` is git-ignored and made by ``npm ci`` (exactly the lock, never rewriting
it), again only when the lock changed. Several pytest processes may share the checkout:
one installs while the others wait on a file lock. Without npm, or when the install
fails, the caller's test skips locally and fails under CI (``ci.unavailable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests._support.ci import unavailable

try:
    import fcntl
except ImportError:  # Windows: installs are not serialised across processes
    fcntl = None  # type: ignore[assignment]

INSTALL_TIMEOUT = 600.0
STAMP = ".stepline-installed"


def installed(folder: Path) -> Path:
    """``folder/node_modules``, installed from ``folder``'s lock if it is not yet."""
    npm = shutil.which("npm")
    if npm is None:
        unavailable(f"npm, to install {folder.name}'s packages (apt-get install -y npm)")
    digest = hashlib.sha256(
        (folder / "package.json").read_bytes() + (folder / "package-lock.json").read_bytes()
    ).hexdigest()
    modules = folder / "node_modules"
    stamp = modules / STAMP
    name = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    with _exclusive(Path(tempfile.gettempdir()) / f"stepline-npm-{name}.lock"):
        if not (stamp.is_file() and stamp.read_text("utf-8") == digest):
            _ci(npm, folder)
            stamp.write_text(digest, "utf-8")
    return modules


def _ci(npm: str, folder: Path) -> None:
    # what npm's cache holds is taken without asking the registry again
    command = [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "STEPLINE_"))}
    env.update(NO_COLOR="1", npm_config_update_notifier="false")
    try:
        done = subprocess.run(
            command,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable(f"`npm ci` in {folder} took over {INSTALL_TIMEOUT:.0f} s")
    if done.returncode != 0:
        unavailable(f"`npm ci` in {folder} failed ({done.returncode}):\n{done.stderr}")


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (advisory; not taken where ``fcntl`` is missing)."""
    with path.open("a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
