"""The outbox's public surface (``stepline.outbox``, ``stepline.sqlalchemy``) is pinned."""

from __future__ import annotations

import stepline.outbox
import stepline.sqlalchemy

OUTBOX = [
    "CHANNEL",
    "DIALECTS",
    "NOTIFY",
    "TABLE",
    "Connection",
    "OutboxError",
    "OutboxRow",
    "StartedRun",
    "ddl",
    "event_row",
    "send",
    "start",
    "start_row",
    "write",
]
SQLALCHEMY = ["outbox_table", "send", "send_async", "start", "start_async"]


def test_outbox_names_are_pinned_and_sorted() -> None:
    # (``annotations`` is the __future__ import; ``@py_*`` pytest's assertion rewriting)
    public = {n for n in dir(stepline.outbox) if n[0] not in "_@" and n != "annotations"}
    assert stepline.outbox.__all__ == OUTBOX
    assert sorted(OUTBOX, key=lambda n: (not n.isupper(), not n[0].isupper(), n)) == OUTBOX
    assert public == set(OUTBOX)
    for name in OUTBOX:
        value = getattr(stepline.outbox, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__.startswith("stepline.outbox._"), name


def test_sqlalchemy_names_are_pinned() -> None:
    assert stepline.sqlalchemy.__all__ == SQLALCHEMY
    assert all(callable(getattr(stepline.sqlalchemy, n)) for n in SQLALCHEMY)
    assert stepline.outbox.TABLE == stepline.outbox.CHANNEL == "stepline_outbox"
