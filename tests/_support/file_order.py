"""The order test files reach xdist's workers: the longest first.

``make test`` runs each file whole in one worker (``--dist loadfile``) and hands the next
file to whichever worker is free. xdist orders the files by how many tests they hold, so a
file of two long process tests (a failover drill, a rolling deploy) came last and ran alone
while the other workers sat idle. Handed out longest first, the short files fill in at the
end instead, and the run ends when the busiest worker does, which is as early as it can.

How long a file takes comes from ``file_seconds.json`` beside this module, measured by a
whole run with ``--record-file-seconds`` (setup, call and teardown of every test, summed
per file, module fixtures included). A file the table does not know yet (written since
it was measured) is taken for a long one, so it never starts last. Only the order depends
on the table: a stale or missing one costs time, never a test.

The order is computed in each worker from the same table (xdist requires every worker to
collect the same items in the same order) and ``--no-loadscope-reorder`` keeps it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

TABLE = Path(__file__).with_name("file_seconds.json")
#: seconds assumed for a file the table does not know
UNKNOWN_SECONDS = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-file-seconds",
        action="store_true",
        help=f"update {TABLE.name} with each test file's measured seconds at the end of the run",
    )


def load(path: Path = TABLE) -> dict[str, float]:
    """The measured seconds per test file (its path relative to the repository)."""
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {str(name): float(seconds) for name, seconds in table.items()}


def ordered(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """``items`` with their files longest first; within a file, the order is kept."""
    position: dict[str, int] = {}
    for item in items:
        position.setdefault(_file(item.nodeid), len(position))

    def key(item: pytest.Item) -> tuple[float, int]:
        file = _file(item.nodeid)
        return (-seconds.get(file, UNKNOWN_SECONDS), position[file])

    return sorted(items, key=key)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items[:] = ordered(items, load())


def pytest_configure(config: pytest.Config) -> None:
    # under xdist the controller hears every worker's reports: it alone records
    if config.getoption("--record-file-seconds") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(Path(str(config.rootpath))), "file-seconds")


class _Recorder:
    """Sums each file's test durations and writes them into the table as the run ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[_file(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        if not self.seconds:
            return
        table = load()
        table.update({file: math.ceil(value * 10) / 10 for file, value in self.seconds.items()})
        kept = {file: table[file] for file in sorted(table) if (self.root / file).exists()}
        TABLE.write_text(json.dumps(kept, indent=0) + "\n")


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]
