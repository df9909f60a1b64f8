"""The event API's answer: sent in full before the runs it started make their first calls.

``POST /e/{key}`` answers as Inngest's event API: ``200 {"ids", "status"}``, or, when an
event of the batch is invalid, ``400 {"ids", "status", "error"}`` with the ids of the
events before it (stored; nothing after it is). ``POST /v1/events`` answers in the REST
shape. Either way the answer is written to the client before ``Intake.start`` lets the
first calls go, so an app never sees a run's first call before its own ``send`` could
have returned.
"""

from __future__ import annotations

import logging
from typing import Any

import starlette.responses
import starlette.types

from stepline import _json
from stepline.engine._runs.intake import Intake

logger = logging.getLogger("stepline.engine.api")


class AnswerFirst(starlette.responses.Response):
    """A JSON response that starts the intake's first calls once it has been sent."""

    media_type = "application/json"

    def __init__(self, content: Any, status: int, intake: Intake) -> None:
        super().__init__(_json.dumpb(content), status_code=status)
        self.intake = intake

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # sent, or the client is gone: the leased calls go out either way
            self.intake.start()


def event_api(intake: Intake, route: str) -> AnswerFirst:
    """The ``POST /e/{key}`` answer, in the shape inngest SDKs read."""
    if intake.error is None:
        return AnswerFirst({"ids": intake.ids, "status": 200}, 200, intake)
    message = _refused(intake, route)
    return AnswerFirst({"ids": intake.ids, "status": 400, "error": message}, 400, intake)


def rest(intake: Intake, route: str) -> AnswerFirst:
    """The ``POST /v1/events`` answer: ``{"data": {"ids"}}``, or a 400 naming the event."""
    if intake.error is None:
        return AnswerFirst({"data": {"ids": intake.ids}}, 200, intake)
    message = _refused(intake, route)
    return AnswerFirst({"error": message, "data": {"ids": intake.ids}}, 400, intake)


def _refused(intake: Intake, route: str) -> str:
    stored = len(intake.ids)
    message = (
        f"{intake.error}; the {stored} event(s) before it were stored (their ids are in "
        "'ids'), none after it: fix that event and send it and the ones after it again"
    )
    logger.warning("rejected POST %s: 400 %s", route, message)
    return message
