"""Quoted field names and reserved-word fields through the real engine (TestEnv).

The engine compiles trigger expressions at registration, substitutes the run's event into
a wait's ``if`` (partial evaluation) and matches later events against the rest: each of
those paths must understand ``event.data.`content-type` `` and ``event.data.if``.
"""

from __future__ import annotations

import datetime as dt

import stepline
from stepline.testing import TestEnv

START = dt.datetime(2030, 1, 7, 10, 30, tzinfo=dt.timezone.utc)
client = stepline.Client(app_id="cel-quoted", is_production=False)


@client.function(
    id="uploads",
    trigger=stepline.TriggerEvent(
        event="file/uploaded", expression="event.data.`content-type` == 'text/csv'"
    ),
)
async def uploads(ctx: stepline.Context) -> str:
    got = await ctx.step.wait_for_event(
        "scanned",
        event="file/scanned",
        timeout=dt.timedelta(hours=1),
        if_exp="async.data.`file.name` == event.data.`file.name` && async.data.if == 'clean'",
    )
    if got is None:
        return "timed out"
    assert isinstance(got.data, dict)
    return f"scanned {got.data['file.name']}"


def test_trigger_and_wait_match_on_quoted_fields() -> None:
    with TestEnv(client, [uploads], start=START) as env:
        file = {"content-type": "text/csv", "file.name": "a.csv"}
        env.send_sync(stepline.Event(name="file/uploaded", data={**file, "file.name": "skip"}))
        env.send_sync(stepline.Event(name="file/uploaded", data={"content-type": "image/png"}))
        env.send_sync(stepline.Event(name="file/uploaded", data=file))
        env.advance_sync(dt.timedelta(minutes=5))
        env.send_sync(stepline.Event(name="file/scanned", data={"file.name": "a.csv", "if": "bad"}))
        env.send_sync(
            stepline.Event(name="file/scanned", data={"file.name": "a.csv", "if": "clean"})
        )
        results = sorted(run.result_sync() for run in env.runs_sync(uploads))
        assert results == ["scanned a.csv", "timed out"]  # the png upload started no run
