"""Runs mypy --strict over step_types.py: the sync face returns values, the async face
returns awaitables, and a deliberately wrong use is rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

pytestmark = [pytest.mark.slow]

HERE = Path(__file__).parent


@pytest.mark.timeout(180)
def test_step_faces_are_typed(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "import stepline\n"
        "async def f(ctx: stepline.Context) -> int:\n"
        "    return ctx.step.run('a', lambda: 1)\n"  # missing await: must be an error
        "def g(ctx: stepline.SyncContext) -> str:\n"
        "    return ctx.step.run('a', lambda: 1)\n"  # int is not str: must be an error
    )
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(HERE / "step_types.py")]
    )
    assert status == 0, out + err
    out, _, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(wrong)])
    assert status == 1
    assert out.count("error:") == 2, out
