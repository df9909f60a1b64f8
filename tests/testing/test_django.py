"""``SteplineTestMixin`` under Django's ``TestCase`` (in a child process: Django is set up once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process]

CASE = Path(__file__).with_name("django_case.py")


def test_a_django_testcase_runs_functions_inside_its_transaction(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(CASE), str(tmp_path / "django.db")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Ran 3 tests" in report
    assert report.rstrip().endswith("OK"), report
