"""A missing optional package fails where the feature is asked for, in ONE line naming the extra.

Each case runs a child interpreter whose import system hides some packages (as a venv
without them would), so nothing imported by this test process interferes.
``tests/test_installs.py`` checks the same from a built wheel in fresh venvs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stepline import _extras
from tests._support.processes import clean_env

pytestmark = [pytest.mark.process]

HIDE = """
import importlib.abc, sys
HIDDEN = {hidden!r}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""

EMBEDDED = """
import flask, stepline, stepline.flask
client = stepline.Client(app_id="probe", is_production=False)
@client.function(id="hello", trigger=stepline.TriggerEvent(event="probe/hello"))
def hello(ctx):
    return "hi"
try:
    stepline.flask.serve(flask.Flask("probe"), client, [hello], engine="embedded", database={db!r})
except stepline.ConfigError as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
    raise SystemExit(3)
print("served")
"""

CLI = """
from stepline.engine._cli import main
raise SystemExit(main({argv!r}))
"""


def _child(hidden: tuple[str, ...], code: str, cwd: Path) -> tuple[int, list[str]]:
    script = HIDE.format(hidden=set(hidden)) + code
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


@pytest.mark.parametrize("hidden", [("starlette",), ("starlette", "uvicorn", "aiohttp")])
def test_serve_embedded_without_the_engine_is_one_config_error(
    tmp_path: Path, hidden: tuple[str, ...]
) -> None:
    code, lines = _child(hidden, EMBEDDED.format(db=str(tmp_path / "e.db")), tmp_path)
    assert code == 3, lines
    assert lines == [
        "MissingExtraError: the embedded engine needs the starlette package, which is not "
        "installed: pip install 'stepline[engine]'"
    ]


def test_serve_embedded_on_postgres_without_psycopg_names_the_postgres_extra(
    tmp_path: Path,
) -> None:
    db = "postgresql://postgres@127.0.0.1:5432/test"
    code, lines = _child(("psycopg", "psycopg_pool"), EMBEDDED.format(db=db), tmp_path)
    assert code == 3, lines
    assert len(lines) == 1, lines
    assert lines[0].endswith("pip install 'stepline[postgres]'"), lines


@pytest.mark.parametrize("hidden", [("uvicorn",), ("starlette", "uvicorn")])
@pytest.mark.parametrize("command", ["dev", "start"])
def test_stepline_dev_without_the_engine_prints_one_line_and_exits_2(
    tmp_path: Path, hidden: tuple[str, ...], command: str
) -> None:
    code, lines = _child(hidden, CLI.format(argv=[command]), tmp_path)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"stepline {command}: the engine needs the {hidden[0]} package")
    assert lines[0].endswith("pip install 'stepline[engine]'")
    assert not (tmp_path / ".stepline").exists(), "checked before anything else"


@pytest.mark.parametrize("command", [["dev"], ["migrate"]])
def test_a_postgres_url_without_psycopg_is_one_line_at_the_cli(
    tmp_path: Path, command: list[str]
) -> None:
    argv = [*command, "--db", "postgresql://someone@127.0.0.1:5432/db"]
    code, lines = _child(("psycopg", "psycopg_pool"), CLI.format(argv=argv), tmp_path)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].endswith("needs psycopg: pip install 'stepline[postgres]'"), lines


def test_problem_names_the_first_missing_module() -> None:
    assert _extras.problem("x", "engine", ("json", "sqlite3")) is None
    line = _extras.problem("x", "engine", ("json", "no_such_module_here"))
    assert line == (
        "x needs the no_such_module_here package, which is not installed: "
        "pip install 'stepline[engine]'"
    )
