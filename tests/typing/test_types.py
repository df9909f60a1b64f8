"""mypy --strict over code written as users write it: the step API's two faces and the
keywords ``Client`` and ``client.function`` relay (declared once as TypedDicts, still
checked where users write them).

One mypy run checks every case (analysing the package once is most of its time), on the
project's own configuration and cache: after ``make typecheck`` only the cases are new.
A file that must type-check has no error; each line of a wrong file marked ``# error``
has one, and no other line has any.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

pytestmark = [pytest.mark.slow]

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

RIGHT_OPTIONS = """\
import stepline
client = stepline.Client('a', is_production=False, streaming='force', environ={})
@client.function(id='f', trigger=stepline.TriggerEvent(event='e'), retries=2,
                 concurrency=3, name='F', nondeterminism='fail', versioning='latest')
def f(ctx: stepline.SyncContext) -> None:
    if ctx.patched('change'):
        ctx.deprecate_patch('older-change')
"""

WRONG_OPTIONS = """\
import stepline
stepline.Client('a', streaming='sometimes')  # error: not a streaming mode
stepline.Client('a', signing_kee='k')  # error: misspelled
client = stepline.Client('a')
client.function(id='f', trigger=stepline.TriggerEvent(event='e'), retries='3')  # error
client.function(id='g', trigger=stepline.TriggerEvent(event='e'), retry=3)  # error
client.function(id='h', trigger=stepline.TriggerEvent(event='e'), versioning='newest')  # error
"""

WRONG_STEPS = """\
import stepline
async def f(ctx: stepline.Context) -> int:
    return ctx.step.run('a', lambda: 1)  # error: the async face returns an awaitable
def g(ctx: stepline.SyncContext) -> str:
    return ctx.step.run('a', lambda: 1)  # error: int is not str
"""

ERROR = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:\d+:)? error:", re.MULTILINE)


def marked(source: str) -> list[int]:
    """The line numbers a wrong case marks ``# error``."""
    return [n for n, line in enumerate(source.splitlines(), 1) if "# error" in line]


@pytest.mark.timeout(300)
def test_users_code_is_checked_as_written(tmp_path: Path) -> None:
    cases = {"right_options.py": RIGHT_OPTIONS, "wrong_options.py": WRONG_OPTIONS}
    cases["wrong_steps.py"] = WRONG_STEPS
    for name, source in cases.items():
        (tmp_path / name).write_text(source)
    files = [HERE / "step_types.py", *(tmp_path / name for name in cases)]
    out, err, status = api.run(
        [
            f"--config-file={ROOT / 'pyproject.toml'}",
            f"--cache-dir={ROOT / '.mypy_cache'}",
            "--show-column-numbers",
            *map(str, files),
        ]
    )
    assert status == 1, out + err  # the wrong cases are errors, and nothing crashed
    found: dict[str, list[int]] = {}
    for match in ERROR.finditer(out):
        found.setdefault(Path(match["file"]).name, []).append(int(match["line"]))
    expected = {name: marked(source) for name, source in cases.items() if marked(source)}
    assert found == expected, out
