"""Test durable functions in plain pytest: an in-process engine on a virtual clock.

``TestEnv(client, functions)`` starts an engine in the test process (SQLite in memory),
serves the app's functions to it in-process and routes the client to it, so the app's own
routes reach it too. Time is virtual: ``advance`` moves it, and ``auto_skip`` jumps it to
the next timer while a test waits for a result. ``mock_step`` replaces a step's output and
``step_calls`` says which steps ran, how often and with what. ``replay`` plays a run
exported from an engine (``stepline runs export``) back against the current code. See
``docs/testing.md``.
"""

from stepline._replay.journal import Journal as Journal
from stepline._replay.playback import Playback as Playback
from stepline._replay.playback import PlayedStep as PlayedStep
from stepline.testing._env import TestEnv as TestEnv
from stepline.testing._mocks import StepCall as StepCall
from stepline.testing._mocks import StepMock as StepMock
from stepline.testing._run import TestRun as TestRun
from stepline.testing._timekeeper import RunWaitingError as RunWaitingError
from stepline.testing._unittest import SteplineTestMixin as SteplineTestMixin

__all__ = [
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
