"""``Scope``: a context manager made of a value and what to do when the block ends.

``contextlib.contextmanager`` builds a generator and a wrapper object for every ``with``,
and steps the generator twice: a few microseconds each time. The calls a run makes go
through several such blocks per step (the function's call, the step's code, the engine's
watch over the call), so those use this instead.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["Scope"]

T = TypeVar("T")


class Scope(Generic[T]):
    """``with Scope(value, ended) as value:`` runs ``ended(value, raised)`` at the end.

    ``raised`` is what the block raised (None if nothing); ``ended`` returns True to
    swallow it.
    """

    __slots__ = ("ended", "value")

    def __init__(self, value: T, ended: Callable[[T, BaseException | None], bool]) -> None:
        self.value = value
        self.ended = ended

    def __enter__(self) -> T:
        return self.value

    def __exit__(
        self,
        kind: type[BaseException] | None,
        raised: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return self.ended(self.value, raised)
