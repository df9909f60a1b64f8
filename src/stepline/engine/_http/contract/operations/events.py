"""The events' routes: send, list, search, follow as a stream, replay."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Link, Operation, param
from stepline.engine._http.contract.operations.shared import CURSOR, LIMIT, NOT_FOUND, TIME

__all__ = ["OPERATIONS"]

#: an event as it is sent (Inngest's shape)
_EVENT = s.obj(
    {
        "name": s.STRING,
        "data": s.OBJECT,
        "id": {**s.STRING, "description": "an idempotency id: a second event with it is dropped"},
        "ts": {**s.INTEGER, "description": "unix milliseconds (now when left out)"},
        "v": s.STRING,
        "user": s.OBJECT,
    }
)

OPERATIONS: tuple[Operation, ...] = (
    # events
    Operation(
        "POST",
        "/v1/events",
        "Send events",
        "events",
        s.data(s.obj({"ids": s.array(s.STRING)}, "ids")),
        body={"anyOf": [_EVENT, s.array(_EVENT)], "description": "an event or a list"},
        body_required=True,
        errors={413: "body too large"},
        description="A 400 for an invalid event also carries `data.ids`: those before it.",
        links=(
            Link(
                "ReplayEvent",
                "POST /v1/events/{event_id}/replay",
                (("event_id", "$response.body#/data/ids/0"),),
            ),
            Link(
                "GetEvent",
                "GET /v1/events/{event_id}",
                (("event_id", "$response.body#/data/ids/0"),),
            ),
        ),
    ),
    Operation(
        "GET",
        "/v1/events",
        "List events, newest first",
        "events",
        s.page(
            s.ref("Event"),
            scanned=s.INTEGER,
            scan_limit=s.INTEGER,
            scan_complete=s.BOOLEAN,
            stream_cursor=s.STRING,
        ),
        query=(
            param("name", s.STRING),
            param("received_after", TIME),
            param("received_before", TIME),
            param("expression", s.STRING, "a CEL expression over `event`"),
            param("scan", {"type": "integer", "minimum": 1}, "events to scan for `expression`"),
            CURSOR,
            LIMIT,
            param("internal", s.BOOLEAN, "false: leave out the engine's own events (true)"),
            param("runs", s.BOOLEAN, "true: each event with the runs it started (false)"),
            param(
                "after",
                s.STRING,
                "a page's `stream_cursor`: the events received since, oldest first",
            ),
        ),
    ),
    Operation(
        "GET",
        "/v1/events/{event_id}",
        "Show an event",
        "events",
        s.data(s.ref("Event")),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/events/{event_id}/runs",
        "The runs an event started, and the functions it did not",
        "events",
        s.obj(
            {
                "data": s.array(s.ref("Run")),
                "metadata": s.obj(
                    {
                        "skipped": s.array(
                            s.obj(
                                {"function_id": s.STRING, "reason": s.STRING, "run_id": s.STRING},
                                "function_id",
                                "reason",
                            )
                        )
                    },
                    "skipped",
                ),
            },
            "data",
            "metadata",
        ),
    ),
    Operation(
        "POST",
        "/v1/events/{event_id}/replay",
        "Send an event again as a new event",
        "events",
        s.data(
            s.obj(
                {"internal_id": s.STRING, "id": s.STRING, "replay_of": s.STRING},
                "internal_id",
                "replay_of",
            )
        ),
        status=201,
        errors={**NOT_FOUND, 409: "the engine's own events are not replayed"},
    ),
)
