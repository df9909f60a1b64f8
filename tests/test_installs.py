"""A built wheel in fresh venvs: the base install runs the engine; a missing package is one line.

Runs ``tools/check_installs.py`` for ``flask`` (``stepline dev`` ready and exiting 0 on SIGTERM,
``serve(..., engine="embedded")``) and ``missing-engine`` (the wheel without Starlette and
uvicorn: ``stepline dev`` prints one line naming ``stepline[engine]`` and exits 2, ``serve``
raises one ``ConfigError`` line). Needs pip to reach an index; venvs are cached by the
wheel's hash under the temp dir. ``tests/sdk/test_extras.py`` checks the same error paths
in-process-fast by hiding modules.
"""

from __future__ import annotations

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


@pytest.mark.timeout(240)
def test_wheel_installs_run_the_engine_or_say_in_one_line_what_is_missing() -> None:
    cache = Path(tempfile.gettempdir()) / "stepline-install-venvs"
    wheel = check_installs.build_wheel(cache / "wheel")
    problems = [
        p
        for extra in ("flask", "missing-engine")
        for p in check_installs.check(extra, cache, wheel)
    ]
    assert problems == []
