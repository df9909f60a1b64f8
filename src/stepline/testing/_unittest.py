"""``SteplineTestMixin``: a ``TestEnv`` per test for ``unittest`` and Django test cases."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from stepline._client import Client
from stepline._definition.function import Function
from stepline.testing._env import TestEnv


class SteplineTestMixin:
    """Mix into a ``unittest.TestCase`` or ``django.test.TestCase``: ``self.stepline`` is
    an open ``TestEnv`` in every test, closed afterwards.

    Plain ``def`` functions run on the test's own thread while it waits on the env
    (``sync_functions="caller"``), so under a Django ``TestCase`` they see the rows the
    test wrote in its still-open transaction.

    Attributes:
        stepline_client: the app's client (set on the class).
        stepline_functions: the functions to serve (set on the class).
        stepline_options: more ``TestEnv`` keywords (``auto_skip``, ``start``...).
        stepline: the test's env.
    """

    stepline_client: ClassVar[Client]
    stepline_functions: ClassVar[Sequence[Function]]
    stepline_options: ClassVar[Mapping[str, Any]] = {}
    stepline: TestEnv

    # provided by unittest.TestCase
    addCleanup: Callable[..., None]

    def setUp(self) -> None:
        """Open ``self.stepline`` (after the other bases' ``setUp``)."""
        super().setUp()  # type: ignore[misc]
        options = {"sync_functions": "caller", **self.stepline_options}
        env = TestEnv(self.stepline_client, self.stepline_functions, **options)
        self.stepline = env.__enter__()
        self.addCleanup(env.close)
