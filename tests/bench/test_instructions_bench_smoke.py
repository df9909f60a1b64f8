"""Smoke test of ``bench/instructions_bench.py``: a tiny workload under callgrind, end to end.

No figure is judged (the counts are for ``make bench``): the script must run one mode
under valgrind and profiled, print the JSON ``bench/all.py`` reads, with a count of
instructions and of Python calls per step and the top functions, and ``all.py`` must turn
it into its rows. Without valgrind the test is skipped, and fails under CI. The parser of
callgrind's output is checked on a small file written here, with no valgrind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests._support.ci import unavailable
from tests.bench.test_bench_smoke import bench_module, rows, run_json

INSTALL = "apt-get install -y valgrind"


@pytest.mark.process
@pytest.mark.timeout(420)
def test_embedded_step_under_callgrind() -> None:
    if shutil.which("valgrind") is None:
        unavailable(f"valgrind is not installed ({INSTALL})")
    data = run_json(
        "instructions_bench.py", "--modes", "embedded-step", "--quick", "--top", "3",
        timeout=400,
    )  # fmt: skip
    assert (data["runs"], data["segments"]) == (1, 1)
    assert list(data["modes"]) == ["embedded-step"]
    cell = data["modes"]["embedded-step"]
    assert (cell["unit"], cell["steps_per_unit"]) == ("run", 10)
    assert len(cell["ir_segments_per_unit"]) == 1
    # a run of ten steps is millions of instructions, and hundreds of Python calls; the
    # interpreter's start and imports (billions) are not in the count
    assert 10**5 < cell["ir_per_step"] < 10**8
    assert 10 < cell["python_calls_per_step"] < 10**5
    assert cell["ir_per_unit"] == pytest.approx(cell["ir_per_step"] * 10)
    tops = ("top_c_self", "top_c_inclusive", "top_python_self", "top_python_calls", "top_calls")
    for key in tops:
        assert len(cell[key]) == 3, key
    assert "_PyEval_EvalFrameDefault" in [r["function"] for r in cell["top_c_self"]]
    assert all(r["ir_per_unit"] > 0 for r in cell["top_c_inclusive"])
    assert all(r["calls_per_unit"] > 0 for r in cell["top_calls"])
    assert any("stepline/" in r["function"] for r in cell["top_python_self"])
    assert [r[0] for r in rows("instructions", data)] == [
        "instructions/step embedded step-by-step (Ir)",
        "Python calls/step embedded step-by-step",
    ]
    assert "embedded step-by-step" in bench_module("instructions_bench").report(data)


DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 1600
ob=(1) /lib/libpython.so
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 500
cob=(2) /lib/libsqlite3.so
cfl=(2) sqlite.c
cfn=(2) sqlite3_step
calls=2 20
12 600
cfn=(1)
calls=0 10
13 300
fn=(2)
20 400
cfn=(3) 0x00000000000ff990
calls=3 30
21 200
fn=(3)
30 200
fn=(4) thread_run'2
cfn=(1)
calls=1 10
40 100
totals: 1600
"""


def test_read_dump(tmp_path: Path) -> None:
    """Own costs, callee costs (a call still running at the dump counts: ``calls=0``),
    compressed names, recursion levels merged, and no inclusive figure for what reaches
    the interpreter."""
    bench = bench_module("instructions_bench")
    path = tmp_path / "part.callgrind"
    path.write_text(DUMP)
    dump = bench.read_dump(path)
    assert dump.total == 1600
    unnamed = "0x00000000000ff990 (libpython.so)"
    assert dump.self_ir == {
        "_PyEval_EvalFrameDefault": 500,
        "sqlite3_step": 400,
        unnamed: 200,
    }
    assert dump.calls[("_PyEval_EvalFrameDefault", "sqlite3_step")] == 600
    assert dump.calls[("_PyEval_EvalFrameDefault", "_PyEval_EvalFrameDefault")] == 300
    assert [r["function"] for r in dump.top_self(1, 2)] == [
        "_PyEval_EvalFrameDefault",
        "sqlite3_step",
    ]
    inclusive = {r["function"]: r["ir_per_unit"] for r in dump.top_inclusive(2, 10)}
    assert inclusive == {"sqlite3_step": 300, unnamed: 100}
