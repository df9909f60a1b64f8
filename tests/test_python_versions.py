"""The Pythons the package says it supports are the ones CI tests, and the README says so;
the oldest Django it says it supports is the one the suite runs."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import django

import stepline.django

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own TOML reader before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
#: where `make test` runs the whole suite: the project venv's Python
MAIN_VERSION = "3.11"


def _nox_versions() -> list[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FAST_VERSIONS" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("noxfile.py has no FAST_VERSIONS")


def _tested() -> list[str]:
    return sorted([*_nox_versions(), MAIN_VERSION], key=lambda v: tuple(map(int, v.split("."))))


def test_the_classifiers_and_requires_python_name_the_tested_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: 3."
    classified = [
        f"3.{c.removeprefix(prefix)}" for c in project["classifiers"] if c.startswith(prefix)
    ]
    assert classified == _tested() == ["3.10", "3.11", "3.12", "3.13"]
    assert project["requires-python"] == f">={_tested()[0]}"


def test_this_python_is_one_of_the_tested() -> None:
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in _tested()


def test_the_readme_names_the_supported_range() -> None:
    readme = (ROOT / "README.md").read_text()
    tested = _tested()
    assert re.search(rf"supports Python {re.escape(tested[0])} to {re.escape(tested[-1])}", readme)
    assert "make test-versions" in readme


def test_ci_runs_the_whole_suite_then_the_matrix() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip().startswith("make ")
    ]
    assert commands == ["make test", "make test-versions"]


def _django_floors() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    found = {
        req.removeprefix("django>=")
        for req in [*extras["django"], *extras["dev"]]
        if req.startswith("django>=")
    }
    assert len(extras["django"]) == 1, extras["django"]
    return found


def test_the_django_floor_is_the_one_stepline_django_checks() -> None:
    floor = ".".join(map(str, stepline.django.MIN_VERSION))
    assert _django_floors() == {floor}
    readme = (ROOT / "README.md").read_text()
    assert f"| Django {floor}+ " in readme
    assert f"needs Django {floor} " in (ROOT / "docs" / "web-django.md").read_text()


def test_the_django_floor_runs_where_no_later_django_installs() -> None:
    installed = tuple(django.VERSION[:2])
    if sys.version_info < (3, 12):  # Django 6 needs Python 3.12: 3.10 and 3.11 run the floor
        assert installed == stepline.django.MIN_VERSION
    else:
        assert installed >= stepline.django.MIN_VERSION
