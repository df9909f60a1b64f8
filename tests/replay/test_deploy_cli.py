"""``stepline deploy check`` and ``runs export`` refusing what they cannot do: each with an
exit status a CI job can tell apart and a message that says what to do next."""

from __future__ import annotations

from tests._support.cli import run_stepline
from tests._support.processes import free_port


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_target_that_does_not_import_is_exit_2_naming_the_module() -> None:
    ran = run_stepline("deploy", "check", "no_such_module_here:client", "--url", nowhere())
    assert ran.returncode == 2
    assert "cannot import 'no_such_module_here'" in ran.stderr
    assert "PYTHONPATH" in ran.stderr


def test_a_target_that_is_not_a_client_is_exit_2() -> None:
    ran = run_stepline(
        "deploy", "check", "tests.replay.test_deploy_cli:nowhere", "--url", nowhere()
    )
    assert ran.returncode == 2
    assert "is function, not a stepline.Client" in ran.stderr


def test_a_module_without_functions_of_its_client_is_exit_2() -> None:
    ran = run_stepline("deploy", "check", "tests._support.clients", "--url", nowhere())
    assert ran.returncode == 2
    assert "name the client" in ran.stderr or "defines no function" in ran.stderr


def test_an_unreachable_engine_is_exit_3_naming_its_url() -> None:
    url = nowhere()
    ran = run_stepline("deploy", "check", "tests.replay.test_playback:client", "--url", url)
    assert ran.returncode == 3
    assert f"could not check: engine at {url} unreachable" in ran.stderr


def test_an_unreachable_app_is_exit_3_too() -> None:
    ran = run_stepline("deploy", "check", f"{nowhere()}/api/inngest", "--url", nowhere())
    assert ran.returncode == 3
    assert "could not check" in ran.stderr


def test_a_negative_ended_is_exit_2() -> None:
    ran = run_stepline(
        "deploy", "check", "tests.replay.test_playback:client", "--ended", "-1", "--url", nowhere()
    )
    assert ran.returncode == 2
    assert "--ended must be 0 or more" in ran.stderr


def test_export_of_a_run_on_an_unreachable_engine_is_exit_1() -> None:
    url = nowhere()
    ran = run_stepline("runs", "export", "01ABC", "--url", url)
    assert ran.returncode == 1
    assert f"engine at {url} unreachable" in ran.stderr
