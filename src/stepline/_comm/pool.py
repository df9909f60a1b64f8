"""The thread pool a handler runs sync functions on, knowing how many calls wait for it."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["SdkPool"]

T = TypeVar("T")


class SdkPool(concurrent.futures.ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that counts the calls submitted and not yet started.

    A thread that goes on with one run's calls by itself (the embedded engine's
    ``_flow.onthread``) hands the pool back as soon as another call waits for it, so a
    run's consecutive steps never jump ahead of calls queued before them.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._count_lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Calls submitted that no thread has started yet."""
        return self._waiting

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """``ThreadPoolExecutor.submit``, counted until a thread starts the call."""
        with self._count_lock:
            self._waiting += 1
        try:
            return super().submit(self._started, fn, *args, **kwargs)
        except BaseException:  # refused (shut down): it will never start
            with self._count_lock:
                self._waiting -= 1
            raise

    def _started(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        with self._count_lock:
            self._waiting -= 1
        return fn(*args, **kwargs)
