"""The package's version has one source and moves with every release.

``stepline._identity.VERSION`` is it: hatchling reads it for the wheel (pyproject's
``[tool.hatch.version]``, with the regular expression hatchling applies by default), the SDK's
headers are built from it, and CHANGELOG.md's newest release is it.
"""

from __future__ import annotations

import re
from pathlib import Path

from stepline import _identity

ROOT = Path(__file__).resolve().parents[2]
#: hatchling's default pattern for a version in a Python file (its ``regex`` source)
HATCH_PATTERN = r"""(?i)^(__version__|VERSION) *= *([\'"])v?(?P<version>.+?)\2"""
#: a release heading of Keep a Changelog: ``## [1.2.3] - 2026-11-27``
RELEASE = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", re.MULTILINE)


def test_the_headers_carry_the_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", _identity.VERSION)
    header, registration = _identity.SDK_HEADER, _identity.SDK_REGISTRATION
    assert (header, registration) == (
        f"stepline-py:v{_identity.VERSION}",
        f"py:v{_identity.VERSION}",
    )


def test_the_wheel_takes_its_version_from_the_identity_module() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    project = pyproject.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^version *=", project, re.MULTILINE) is None, "no second version"
    assert re.search(r'^dynamic = \["version"\]$', project, re.MULTILINE)
    hatch = pyproject.split("\n[tool.hatch.version]\n", 1)[1].split("\n[", 1)[0]
    assert hatch.strip() == 'path = "src/stepline/_identity.py"'
    source = (ROOT / "src" / "stepline" / "_identity.py").read_text("utf-8")
    found = re.search(HATCH_PATTERN, source, re.MULTILINE)
    assert found is not None
    assert found.group("version") == _identity.VERSION


def test_the_changelog_names_this_release_first_and_says_how_to_upgrade() -> None:
    text = (ROOT / "CHANGELOG.md").read_text("utf-8")
    releases = [m.group("version") for m in RELEASE.finditer(text)]
    assert releases[0] == _identity.VERSION, "a release moves VERSION and adds its section"
    assert releases == sorted(releases, key=lambda v: [int(p) for p in v.split(".")])[::-1]
    assert "## [Unreleased]" in text
    assert "## Upgrading" in text
    assert "](CHANGELOG.md)" in (ROOT / "README.md").read_text("utf-8")
