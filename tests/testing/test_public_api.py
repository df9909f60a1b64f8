"""The public surface of ``stepline.testing`` is explicit: this pins it."""

from __future__ import annotations

import inspect

import stepline.testing
import stepline.testing.plugin

EXPECTED = [
    "Journal",
    "Playback",
    "PlayedStep",
    "RunWaitingError",
    "StepCall",
    "StepMock",
    "SteplineTestMixin",
    "TestEnv",
    "TestRun",
]

ENV_METHODS = {
    "advance",
    "advance_sync",
    "aclose",
    "close",
    "engine",
    "export",
    "export_sync",
    "get_run",
    "mock_step",
    "now",
    "replay",
    "replay_sync",
    "runs",
    "runs_sync",
    "send",
    "send_sync",
    "settle",
    "settle_sync",
    "start",
    "start_sync",
    "step_calls",
    "stream",
    "stream_sync",
}

RUN_METHODS = {
    "cancel",
    "cancel_sync",
    "describe",
    "describe_sync",
    "result",
    "result_sync",
    "signal",
    "signal_sync",
    "steps",
    "steps_sync",
    "stream",
    "stream_sync",
}


def test_all_is_pinned_and_sorted() -> None:
    assert stepline.testing.__all__ == EXPECTED
    for name in EXPECTED:
        # a recorded run and its playback are the replay core's (the deploy check's too)
        home = getattr(stepline.testing, name).__module__
        assert home.startswith(("stepline.testing._", "stepline._replay.")), (name, home)


def _public(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")} - {"auto_skip"}


def test_env_and_run_methods_are_pinned() -> None:
    assert _public(stepline.testing.TestEnv) == ENV_METHODS
    assert _public(stepline.testing.TestRun) == RUN_METHODS


def test_every_async_method_has_a_blocking_twin_with_the_same_parameters() -> None:
    for cls in (stepline.testing.TestEnv, stepline.testing.TestRun):
        for name, member in vars(cls).items():
            if inspect.iscoroutinefunction(member) and not name.startswith("_"):
                twin = "close" if name == "aclose" else f"{name}_sync"
                assert inspect.signature(getattr(cls, twin)).parameters.keys() == (
                    inspect.signature(member).parameters.keys()
                ), name


def test_the_plugin_offers_its_two_fixtures() -> None:
    fixtures = [name for name in vars(stepline.testing.plugin) if name.startswith("stepline_")]
    assert fixtures == ["stepline_env", "stepline_replay"]
