"""The tier guard (tests/_support/tiers.py) fails a test that lacks the marker it needs.

Each case runs a small test file in a pytest session of its own (pytester, in this
process) with the guard loaded, as the suite loads it from the root conftest.
"""

from __future__ import annotations

import textwrap

import pytest

from tests._support import tiers

# the inner tests start a process each (the guard attributes it to them, not to these)
pytestmark = [pytest.mark.process]

PLUGIN = "tests._support.tiers"


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> object:
    # record mode would let every inner test pass
    monkeypatch.delenv(tiers.REPORT_ENV, raising=False)

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_inner=textwrap.dedent(source))
        return pytester.runpytest_inprocess(
            "-p", PLUGIN, "-p", "no:randomly", "-p", "no:cacheprovider", *args
        )

    return run


def test_an_unmarked_test_that_starts_a_process_fails_naming_the_marker(run) -> None:
    result = run(
        """
        import subprocess, sys

        def test_starts():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        """
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*this test starts a process (subprocess.Popen([[]'*python*', '-c', '...'[]])): "
            "mark it @pytest.mark.process*"
        ]
    )


@pytest.mark.parametrize(
    "source",
    [
        """
        import pytest, subprocess, sys

        @pytest.mark.process
        def test_starts():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        """,
        """
        import pytest, subprocess, sys

        pytestmark = [pytest.mark.process]

        def test_starts():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        """,
        """
        import pytest, subprocess, sys

        @pytest.mark.process
        class TestStarting:
            def test_starts(self):
                subprocess.run([sys.executable, "-c", "pass"], check=True)
        """,
    ],
    ids=["on-the-test", "on-the-module", "on-the-class"],
)
def test_a_marked_test_that_starts_a_process_passes(run, source: str) -> None:
    run(source).assert_outcomes(passed=1)


def test_a_fixture_started_for_the_test_counts(run) -> None:
    result = run(
        """
        import pytest, subprocess, sys

        @pytest.fixture
        def child():
            proc = subprocess.Popen([sys.executable, "-c", "pass"])
            yield proc
            proc.wait()

        def test_uses(child):
            assert child.pid
        """
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*this test starts a process*mark it @pytest.mark.process*"])


def test_a_fork_and_a_multiprocessing_child_are_processes(run) -> None:
    result = run(
        """
        import multiprocessing, os

        def test_forks():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

        def test_spawns():
            child = multiprocessing.get_context("spawn").Process(target=print)
            child.start()
            child.join()
        """
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*this test starts a process (os.fork()): mark it @pytest.mark.process*",
            "*this test starts a process (multiprocessing Process.start(*)): mark it*",
        ],
        consecutive=False,
    )


def test_the_fast_tier_leaves_out_every_marked_test(run) -> None:
    result = run(
        """
        import pytest

        def test_fast():
            pass

        @pytest.mark.slow
        def test_slow():
            pass

        @pytest.mark.postgres
        class TestOnPostgres:
            def test_query(self):
                pass
        """,
        "--tier",
        "fast",
    )
    result.assert_outcomes(passed=1, deselected=2)
