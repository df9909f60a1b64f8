"""The pytest plugin (registered as ``stepline``): the ``stepline_env`` fixture.

``stepline_env(client, functions, **options)`` opens a ``TestEnv`` (its engine on a
thread of its own) and closes it after the test. Its async methods work from async
tests (``await env.start(...)``) as its ``*_sync`` twins do from sync ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function
    from stepline.testing._env import TestEnv


class EnvFactory(Protocol):
    """What the ``stepline_env`` fixture gives a test."""

    def __call__(self, client: Client, functions: Sequence[Function], **options: Any) -> TestEnv:
        """An open ``TestEnv`` for ``client`` and ``functions`` (options as ``TestEnv``'s)."""
        ...


@pytest.fixture
def stepline_env() -> Iterator[EnvFactory]:
    """Make open ``TestEnv``s; each is closed when the test ends."""
    from stepline.testing._env import TestEnv

    with contextlib.ExitStack() as stack:

        def make(client: Client, functions: Sequence[Function], **options: Any) -> TestEnv:
            return stack.enter_context(TestEnv(client, functions, **options))

        yield make
