"""A built wheel in fresh venvs: the base install runs the engine; a missing package is one line.

Runs ``tools/check_installs.py`` for ``flask`` (``stepline dev`` ready and exiting 0 on SIGTERM,
``serve(..., engine="embedded")``) and ``missing-engine`` (the wheel without Starlette and
uvicorn: ``stepline dev`` prints one line naming ``stepline[engine]`` and exits 2, ``serve``
raises one ``ConfigError`` line). Needs pip to reach an index; venvs are cached by the
wheel's hash under the temp dir, and made without pip of their own (this venv's pip installs
into them). ``tests/sdk/test_extras.py`` checks the same error paths
in-process-fast by hiding modules.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process]

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location(
    "check_installs", HERE.parent / "tools" / "check_installs.py"
)
assert spec is not None
assert spec.loader is not None
check_installs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_installs)

CACHE = Path(tempfile.gettempdir()) / "stepline-install-venvs"
EXTRAS = ("flask", "missing-engine")


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The project's wheel, built once for the file's tests."""
    return Path(check_installs.build_wheel(CACHE / "wheel"))


@pytest.mark.timeout(240)
def test_wheel_installs_run_the_engine_or_say_in_one_line_what_is_missing(wheel: Path) -> None:
    # the two venvs install side by side: each mostly waits on pip's downloads and disk
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        found = pool.map(lambda extra: check_installs.check(extra, CACHE, wheel), EXTRAS)
        problems = [p for each in found for p in each]
    assert problems == []
