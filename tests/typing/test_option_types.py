"""Runs mypy --strict over uses of the keywords ``Client`` and ``client.function`` relay:
declared once as TypedDicts, they are still checked where users write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(180)
def test_relayed_keywords_are_checked_at_the_call(tmp_path: Path) -> None:
    right = tmp_path / "right.py"
    right.write_text(
        "import stepline\n"
        "client = stepline.Client('a', is_production=False, streaming='force', environ={})\n"
        "@client.function(id='f', trigger=stepline.TriggerEvent(event='e'), retries=2,\n"
        "                 concurrency=3, name='F', nondeterminism='fail', versioning='latest')\n"
        "def f(ctx: stepline.SyncContext) -> None:\n"
        "    if ctx.patched('change'):\n"
        "        ctx.deprecate_patch('older-change')\n"
    )
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "import stepline\n"
        "stepline.Client('a', streaming='sometimes')\n"  # not a streaming mode
        "stepline.Client('a', signing_kee='k')\n"  # misspelled
        "client = stepline.Client('a')\n"
        "client.function(id='f', trigger=stepline.TriggerEvent(event='e'), retries='3')\n"
        "client.function(id='g', trigger=stepline.TriggerEvent(event='e'), retry=3)\n"
        "client.function(id='h', trigger=stepline.TriggerEvent(event='e'), versioning='newest')\n"
    )
    flags = ["--strict", "--no-incremental", "--cache-dir=/dev/null"]
    out, err, status = api.run([*flags, str(right)])
    assert status == 0, out + err
    out, _, status = api.run([*flags, str(wrong)])
    assert status == 1
    assert out.count("error:") == 5, out
