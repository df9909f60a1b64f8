"""The pytest plugin (registered as ``stepline``): the ``stepline_env`` and ``stepline_replay``
fixtures.

``stepline_env(client, functions, **options)`` opens a ``TestEnv`` (its engine on a
thread of its own) and closes it after the test. Its async methods work from async
tests (``await env.start(...)``) as its ``*_sync`` twins do from sync ones.

``stepline_replay(journal, client, functions)`` plays a run exported with ``stepline runs
export`` back against the current code and fails the test at the first difference from
the record (``TestEnv.replay``, without an engine: playback needs none).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from stepline._client import Client
    from stepline._definition.function import Function
    from stepline._replay.journal import Journal
    from stepline._replay.playback import Playback
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


class ReplayFactory(Protocol):
    """What the ``stepline_replay`` fixture gives a test."""

    def __call__(
        self,
        journal: Journal | Mapping[str, Any] | str | os.PathLike[str],
        client: Client,
        functions: Sequence[Function],
        *,
        outputs: Mapping[str, Any] | None = None,
    ) -> Playback:
        """The playback of ``journal``; the test fails at its first difference."""
        ...


@pytest.fixture
def stepline_replay() -> ReplayFactory:
    """Play exported runs back against the current code; a difference fails the test."""
    from stepline._replay.journal import Journal
    from stepline._replay.playback import Player

    def replay(
        journal: Journal | Mapping[str, Any] | str | os.PathLike[str],
        client: Client,
        functions: Sequence[Function],
        *,
        outputs: Mapping[str, Any] | None = None,
    ) -> Playback:
        played = Player(client, functions).play_sync(Journal.load(journal), outputs)
        played.assert_same()
        return played

    return replay
