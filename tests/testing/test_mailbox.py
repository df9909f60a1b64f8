"""``Mailbox``: calls posted by worker threads run on the thread waiting on the env."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from stepline.testing._mailbox import Mailbox, MailboxClosedError


def test_a_posted_call_runs_on_the_waiting_thread() -> None:
    mailbox = Mailbox()
    done: concurrent.futures.Future[str] = concurrent.futures.Future()
    ran_on: list[str] = []

    def worker() -> None:
        result = mailbox.run(lambda: ran_on.append(threading.current_thread().name) or "ok")
        done.set_result(result)

    thread = threading.Thread(target=worker, name="worker")
    thread.start()  # posts before anyone waits: the call is kept for the next waiter
    assert mailbox.wait(done) == "ok"
    thread.join()
    assert ran_on == [threading.current_thread().name]
    assert mailbox.pending == 0


def test_errors_and_control_flow_reach_the_poster() -> None:
    mailbox = Mailbox()
    done: concurrent.futures.Future[BaseException] = concurrent.futures.Future()

    class Interrupt(BaseException):
        pass

    def boom() -> None:
        raise Interrupt

    def worker() -> None:
        try:
            mailbox.run(boom)
        except Interrupt as exc:
            done.set_result(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert isinstance(mailbox.wait(done), Interrupt)
    thread.join()


def test_close_fails_calls_nobody_picked_up() -> None:
    mailbox = Mailbox()
    failed: concurrent.futures.Future[BaseException] = concurrent.futures.Future()

    def worker() -> None:
        try:
            mailbox.run(lambda: None)
        except MailboxClosedError as exc:
            failed.set_result(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    while not mailbox.pending:
        threading.Event().wait(0.001)
    mailbox.close()
    assert isinstance(failed.result(5), MailboxClosedError)
    thread.join()
    with pytest.raises(MailboxClosedError):
        mailbox.run(lambda: None)
