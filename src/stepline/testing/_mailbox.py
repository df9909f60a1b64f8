"""``Mailbox``: run calls on the thread that waits on the test env, not on a pool thread.

With ``sync_functions="caller"``, the engine's worker does not run a plain ``def``
function on its own pool thread: it posts the call here and the test's thread runs it
while it blocks in a ``*_sync`` method of the env (or in a blocking client call routed
to it). The function then shares that thread's state: a Django ``TestCase``'s open
transaction, thread-local sessions, ``threading.local`` fixtures.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class MailboxClosedError(RuntimeError):
    """The test env closed while a function call waited for a thread to run it."""


class _Letter:
    """One call posted to the mailbox, and the future its poster waits on."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def deliver(self) -> None:
        try:
            result = self.call()
        except BaseException as exc:  # the function's control flow too: it ends on the poster
            self.future.set_exception(exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            self.future.set_result(result)


class Mailbox:
    """Hands calls from worker threads to whichever thread is waiting on the env."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[queue.SimpleQueue[_Letter | None]] = []
        self._pending: list[_Letter] = []
        self._closed = False

    @property
    def pending(self) -> int:
        """Calls posted that no thread has picked up yet."""
        with self._lock:
            return len(self._pending)

    def run(self, call: Callable[[], T]) -> T:
        """Post ``call`` and block until a waiting thread has run it; its outcome is ours."""
        letter = _Letter(call)
        with self._lock:
            if self._closed:
                raise MailboxClosedError("the test env is closed")
            self._post(letter)
        result: T = letter.future.result()
        return result

    def wait(self, future: concurrent.futures.Future[T]) -> T:
        """Block until ``future`` is done, running the calls posted meanwhile."""
        inbox: queue.SimpleQueue[_Letter | None] = queue.SimpleQueue()
        with self._lock:
            self._waiters.append(inbox)
            for letter in self._pending:
                inbox.put(letter)
            self._pending.clear()
        future.add_done_callback(lambda _done: inbox.put(None))
        try:
            while not future.done():
                posted = inbox.get()
                if posted is not None:
                    posted.deliver()
        finally:
            with self._lock:
                self._waiters.remove(inbox)
                while not inbox.empty():
                    left = inbox.get_nowait()
                    if left is not None:
                        self._post(left)
        return future.result()

    def close(self) -> None:
        """Refuse new calls and fail the ones nobody picked up."""
        with self._lock:
            self._closed = True
            letters, self._pending = self._pending, []
        for letter in letters:
            letter.future.set_exception(MailboxClosedError("the test env closed first"))

    def _post(self, letter: _Letter) -> None:
        # the newest waiter: an outer wait on the same thread is busy running a call
        if self._waiters:
            self._waiters[-1].put(letter)
        else:
            self._pending.append(letter)
