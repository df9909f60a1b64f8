"""The runs' routes: start, list, query, read, wait, cancel and replay runs, their steps, streams.

Also durable endpoints' inline runs (called by the app's SDK) and each asker's saved run
queries.
"""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Link, Operation, param
from stepline.engine._http.contract.operations.shared import (
    ATTRIBUTES,
    CURSOR,
    LIMIT,
    NOT_FOUND,
    RUN_ID,
    START,
    TIME,
)

__all__ = ["OPERATIONS"]

_WAIT = param(
    "wait",
    {"type": "number", "minimum": 0, "maximum": 60},
    "long-poll: answer when the run ends or after this many seconds",
)
_RUN_STATE = s.data(s.obj({"run_id": s.STRING, "status": s.RUN_STATUS}, "run_id", "status"))
_RUN_LINKS = (
    Link("GetRun", "GET /v1/runs/{run_id}", (("run_id", "$response.body#/data/run_id"),)),
    Link(
        "CancelRun", "POST /v1/runs/{run_id}/cancel", (("run_id", "$response.body#/data/run_id"),)
    ),
    Link(
        "ReplayRun", "POST /v1/runs/{run_id}/replay", (("run_id", "$response.body#/data/run_id"),)
    ),
    Link("GetSteps", "GET /v1/runs/{run_id}/steps", (("run_id", "$response.body#/data/run_id"),)),
)

OPERATIONS: tuple[Operation, ...] = (
    # runs
    Operation(
        "POST",
        "/v1/functions/{function_id:path}/runs",
        "Start a run of a function",
        "runs",
        s.data(
            s.obj(
                {
                    "run_id": s.STRING,
                    "function_id": s.STRING,
                    "created": s.BOOLEAN,
                    "run": s.ref("Run"),
                },
                "run_id",
                "function_id",
                "created",
            )
        ),
        status=201,
        also=(200,),
        query=(_WAIT,),
        body=START,
        errors={
            404: "no such function",
            409: "skipped by flow control (`event_id`) or `run_id_taken`",
            413: "body too large",
        },
        links=_RUN_LINKS,
        description="201 for a new run; 200 for the one an `idempotency_key` started before.",
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}",
        "Show a run",
        "runs",
        s.data(s.ref("Run")),
        query=(_WAIT,),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs",
        "List runs, newest first",
        "runs",
        s.page(
            s.ref("Run"),
            exact={
                "type": "boolean",
                "description": "with a query: the page is one SQL query (no scan)",
            },
            scanned={"type": "integer", "description": "with a query that scans: runs read"},
            scan_limit={"type": "integer", "description": "the scan's limit (`scan`)"},
            scan_complete={
                "type": "boolean",
                "description": "the scan read every run the other filters select",
            },
        ),
        query=(
            param("function_id", s.STRING),
            param("status", s.STRING, "comma-separated run statuses, any case"),
            param("since", TIME),
            param("until", TIME),
            param("event_id", s.STRING),
            param("version", s.STRING, "the app version the runs started on"),
            param("attribute", s.STRING, "`name=value` (at most 32)", repeated=True),
            param("run_id", s.STRING, "a run id or its prefix"),
            param("parent_run_id", s.STRING),
            param(
                "query",
                s.STRING,
                "a run query (CEL over the run's fields, docs/dashboard.md); a bad one is a "
                "400 with `code: invalid_query` and the problem's `column` in `details`",
            ),
            param(
                "scan",
                {"type": "integer", "minimum": 1, "maximum": 50000},
                "runs a query that is not all SQL examines at most (5000)",
            ),
            CURSOR,
            LIMIT,
        ),
    ),
    Operation(
        "DELETE",
        "/v1/runs/{run_id}",
        "Cancel a run",
        "runs",
        _RUN_STATE,
        errors=NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/cancel",
        "Cancel a run",
        "runs",
        _RUN_STATE,
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/steps",
        "A run's steps",
        "runs",
        s.data(s.array(s.ref("Step"))),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/attempts",
        "Every attempt of each step that failed once",
        "runs",
        s.data(s.array(s.ref("Attempt"))),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/export",
        "A run as a `stepline.run/1` journal",
        "runs",
        s.ref("RunJournal"),
        query=(
            param("drop_output", s.STRING, "a step whose output to leave out", repeated=True),
            param("redact_key", s.STRING, "a key whose values to mask", repeated=True),
            param("download", s.STRING, "1: as a file to save"),
        ),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/history",
        "Every recorded transition of a run, oldest first",
        "runs",
        s.data(s.array(s.ref("Transition"))),
        errors=NOT_FOUND,
        description="Queued, started, each step's start and end, each failed attempt and "
        "its retry, the run's notices and its end, as the run's records hold them.",
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/rerun",
        "Start the run's function again with its events",
        "runs",
        RUN_ID,
        errors=NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/replay",
        "Replay an ended run, from a step or from the start",
        "runs",
        s.data(
            s.obj(
                {
                    "run_id": s.STRING,
                    "replay_of": s.nullable(s.STRING),
                    "replay_from_step": s.nullable(s.STRING),
                    "replay_from_step_name": s.nullable(s.STRING),
                },
                "run_id",
            )
        ),
        status=201,
        body=s.obj({"from_step": {"type": "string", "minLength": 1}}),
        errors={404: "no such run or step", 409: "the run is live"},
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/attributes",
        "Set a run's attributes",
        "runs",
        s.data(
            s.obj(
                {
                    "run_id": s.STRING,
                    "attributes": {"type": "object", "additionalProperties": s.STRING},
                },
                "run_id",
                "attributes",
            )
        ),
        body=s.obj({"attributes": ATTRIBUTES}, "attributes"),
        body_required=True,
        errors={**NOT_FOUND, 413: "body too large"},
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/tokens",
        "A run's AI token usage",
        "runs",
        s.data(s.ref("RunTokens")),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/conversations/{conversation_id}/runs",
        "A conversation's runs, oldest first",
        "runs",
        s.page(s.ref("Run")),
        query=(CURSOR, LIMIT),
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/stream",
        "Publish to a run's stream (SDK)",
        "streams",
        s.data(s.obj({"seqs": s.array(s.INTEGER)}, "seqs")),
        body=s.obj(
            {"messages": s.array(s.obj({"topic": s.STRING, "data": s.ANY, "id": s.STRING}))},
            description='`{"messages": [...]}`: a 400 without it',
        ),
        body_required=True,
        errors={**NOT_FOUND, 409: "the run has ended", 413: "message too large"},
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/stream",
        "Read a run's stream: a JSON page, or Server-Sent Events",
        "streams",
        s.obj(
            {"data": s.array(s.OBJECT), "ended": s.BOOLEAN, "next": s.INTEGER},
            "data",
            "ended",
            "next",
        ),
        query=(
            param("topic", s.STRING),
            param("after", {"type": "integer", "minimum": 0}, "the last seq read"),
            param("wait", {"type": "number", "minimum": 0, "maximum": 60}),
            param("limit", {"type": "integer", "minimum": 1}),
        ),
        errors={**NOT_FOUND, 429: "too many readers"},
        media=("application/json", "text/event-stream"),
    ),
    # durable endpoints' inline runs (the app's SDK)
    Operation(
        "POST",
        "/v1/functions/{function_id:path}/inline",
        "Start a durable endpoint's run inline (SDK)",
        "sdk",
        s.OBJECT,
        also=(201,),
        body=START,
        errors={404: "no such function", 409: "skipped or taken", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/inline/checkpoint",
        "Record an inline run's steps (SDK)",
        "sdk",
        s.OBJECT,
        body=s.obj({"job_id": s.STRING, "owner": s.STRING, "steps": s.array(s.OBJECT)}),
        body_required=True,
        errors={**NOT_FOUND, 409: "`lease_lost`", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/inline/answer",
        "Answer an inline run's call (SDK)",
        "sdk",
        s.OBJECT,
        body=s.obj(
            {
                "job_id": s.STRING,
                "owner": s.STRING,
                "status": s.INTEGER,
                "headers": s.OBJECT,
                "body": s.ANY,
            }
        ),
        body_required=True,
        errors={**NOT_FOUND, 409: "`lease_lost`", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/checkpoint/{run_id}/async",
        "Record step results (SDK)",
        "sdk",
        s.obj({"ok": s.BOOLEAN}, "ok"),
        body=s.obj(
            {"steps": s.array(s.OBJECT), "qi_id": s.STRING},
            description="the SDK's checkpoint; `qi_id`, the call's, fences a call given up",
        ),
        body_required=True,
        errors={**NOT_FOUND, 409: "the call was lost", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/outbox/deliveries",
        "Deliver a batch of outbox rows (`stepline relay`)",
        "sdk",
        s.data(s.array(s.obj({"outcome": s.STRING, "note": s.ANY}, "outcome"))),
        body=s.obj({"rows": s.array(s.obj({"kind": s.STRING, "body": s.ANY}))}, "rows"),
        body_required=True,
        errors={413: "body too large"},
    ),
    # saved views: the asker's named run queries
    Operation(
        "GET",
        "/v1/views",
        "The asker's saved views of the runs page",
        "runs",
        s.data(s.array(s.ref("SavedView"))),
    ),
    Operation(
        "PUT",
        "/v1/views/{name}",
        "Save a view (a run query and its columns), replacing the asker's of that name",
        "runs",
        s.data(s.ref("SavedView")),
        body=s.obj({"query": s.STRING, "columns": s.array(s.STRING)}),
        body_required=True,
        errors={409: "the asker has the most views kept: delete one first"},
    ),
    Operation(
        "DELETE",
        "/v1/views/{name}",
        "Delete one of the asker's saved views",
        "runs",
        s.data(s.obj({"name": s.STRING, "deleted": s.BOOLEAN}, "name", "deleted")),
        errors=NOT_FOUND,
    ),
)
