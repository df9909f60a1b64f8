"""``bench/instructions_bench.py``'s reading of callgrind's output, on a small file written here.

The bench itself runs under ``make bench`` (``bench/all.py --only instructions --quick``
runs it end to end): under callgrind a Python process runs about 50 times slower, so even
one tiny mode (the interpreter's start and imports under valgrind) costs a minute or more
of a core, which the suite's time budget does not have room for.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.test_bench_smoke import bench_module

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
