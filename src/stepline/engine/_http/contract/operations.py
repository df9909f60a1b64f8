"""What each ``/v1`` route reads and answers: one ``Operation`` per row of the access table.

``stepline._serving.access.ENGINE`` says which routes exist and which credentials each
accepts; ``OPERATIONS`` says, for every ``/v1`` row, its query parameters, its body and its
answers. ``api`` refuses to build the app when a ``/v1`` route has no operation here (or an
operation no route), and ``document`` renders both into the OpenAPI document served at
``GET /v1/openapi.json``; path parameters come from the table's path itself, so neither
can name a route the other lacks.
"""

from __future__ import annotations

import dataclasses

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.schemas import Schema

__all__ = ["OPERATIONS", "Operation", "Param", "operation"]


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    description: str = ""
    #: may be given more than once (``?attribute=a=1&attribute=b=2``)
    repeated: bool = False
    required: bool = False
    deprecated: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: a value of this operation's answer feeds another operation."""

    name: str
    #: the operation it feeds, as ``"METHOD /path"`` (the table's path)
    target: str
    #: the target's parameter -> a runtime expression over this answer
    parameters: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One route's contract beyond its credentials (which are the access table's)."""

    method: str
    path: str
    summary: str
    tag: str
    #: the success status and its body (None: not JSON, see ``media``)
    answer: Schema | None
    status: int = 200
    #: the other success statuses with the same body (a start that found its run: 200)
    also: tuple[int, ...] = ()
    query: tuple[Param, ...] = ()
    body: Schema | None = None
    body_required: bool = False
    #: refusals beyond the ones every route may answer (400, 401, 503), with their meaning
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    #: the answer's media type when it is not JSON (or both, for a stream's page)
    media: tuple[str, ...] = ("application/json",)
    links: tuple[Link, ...] = ()
    description: str = ""
    deprecated: bool = False


def _p(name: str, schema: Schema, description: str = "", **more: bool) -> Param:
    return Param(name, schema, description, **more)


_LIMIT = _p("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (50)")
_CURSOR = _p("cursor", s.STRING, "the previous page's `next_cursor`")
_WAIT = _p(
    "wait",
    {"type": "number", "minimum": 0, "maximum": 60},
    "long-poll: answer when the run ends or after this many seconds",
)
_TIME = {"type": "string", "description": "an RFC 3339 time or unix seconds"}
_WINDOW = (
    _p("window", {"enum": ["1h", "6h", "24h", "7d"]}, "the window ending now (24h)"),
    _p("since", _TIME),
    _p("until", _TIME),
    _p("bucket", s.STRING, "seconds, or 30s, 5m, 1h, 1d"),
)
#: the metrics route's windows: the same, or the smallest that holds the function's runs
_METRICS_WINDOW = (
    _p(
        "window",
        {"enum": ["1h", "6h", "24h", "7d", "auto"]},
        "the window ending now (24h); auto: the smallest holding all the function's runs",
    ),
    *_WINDOW[1:],
)
_START = s.obj(
    {
        "data": s.OBJECT,
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
        "started_by": s.STRING,
        "run_id": {"type": "string", "description": "a ULID the caller promised"},
        "attributes": {"type": "object", "additionalProperties": s.STRING},
    }
)
_RUN_STATE = s.data(s.obj({"run_id": s.STRING, "status": s.RUN_STATUS}, "run_id", "status"))
_RUN_ID = s.data(s.obj({"run_id": s.STRING}, "run_id"))
_BULK_START = s.obj(
    {
        "filter": s.obj(
            {
                "function_id": s.STRING,
                "status": s.array(s.STRING),
                "since": _TIME,
                "until": _TIME,
            }
        ),
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
    }
)
_DECISION = s.obj({"by": s.STRING, "args": s.OBJECT, "reason": s.STRING})
_NOT_FOUND = {404: "not found"}
_BULK_LINKS = (
    Link("GetBulk", "GET /v1/bulk/{bulk_id}", (("bulk_id", "$response.body#/data/bulk_id"),)),
    Link(
        "StopBulk", "POST /v1/bulk/{bulk_id}/cancel", (("bulk_id", "$response.body#/data/bulk_id"),)
    ),
)
#: the first listed function feeds what acts on one function
_FIRST_FUNCTION = (("function_id", "$response.body#/data/0/function_id"),)
_FUNCTION_LINKS = (
    Link("StartRun", "POST /v1/functions/{function_id:path}/runs", _FIRST_FUNCTION),
    Link("Pause", "POST /v1/functions/{function_id:path}/pause", _FIRST_FUNCTION),
    Link("Resume", "POST /v1/functions/{function_id:path}/resume", _FIRST_FUNCTION),
    Link("Metrics", "GET /v1/functions/{function_id:path}/metrics", _FIRST_FUNCTION),
)
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
        body=_START,
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
        errors=_NOT_FOUND,
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
            _p("function_id", s.STRING),
            _p("status", s.STRING, "comma-separated run statuses, any case"),
            _p("since", _TIME),
            _p("until", _TIME),
            _p("event_id", s.STRING),
            _p("version", s.STRING, "the app version the runs started on"),
            _p("attribute", s.STRING, "`name=value` (at most 32)", repeated=True),
            _p("run_id", s.STRING, "a run id or its prefix"),
            _p("parent_run_id", s.STRING),
            _p(
                "query",
                s.STRING,
                "a run query (CEL over the run's fields, docs/dashboard.md); a bad one is a "
                "400 with `code: invalid_query` and the problem's `column` in `details`",
            ),
            _p(
                "scan",
                {"type": "integer", "minimum": 1, "maximum": 50000},
                "runs a query that is not all SQL examines at most (5000)",
            ),
            _CURSOR,
            _LIMIT,
        ),
    ),
    Operation(
        "DELETE",
        "/v1/runs/{run_id}",
        "Cancel a run",
        "runs",
        _RUN_STATE,
        errors=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/cancel",
        "Cancel a run",
        "runs",
        _RUN_STATE,
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/steps",
        "A run's steps",
        "runs",
        s.data(s.array(s.ref("Step"))),
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/attempts",
        "Every attempt of each step that failed once",
        "runs",
        s.data(s.array(s.ref("Attempt"))),
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/export",
        "A run as a `stepline.run/1` journal",
        "runs",
        s.ref("RunJournal"),
        query=(
            _p("drop_output", s.STRING, "a step whose output to leave out", repeated=True),
            _p("redact_key", s.STRING, "a key whose values to mask", repeated=True),
            _p("download", s.STRING, "1: as a file to save"),
        ),
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/history",
        "Every recorded transition of a run, oldest first",
        "runs",
        s.data(s.array(s.ref("Transition"))),
        errors=_NOT_FOUND,
        description="Queued, started, each step's start and end, each failed attempt and "
        "its retry, the run's notices and its end, as the run's records hold them.",
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/rerun",
        "Start the run's function again with its events",
        "runs",
        _RUN_ID,
        errors=_NOT_FOUND,
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
        body=s.obj(
            {"attributes": {"type": "object", "additionalProperties": s.STRING}}, "attributes"
        ),
        body_required=True,
        errors={**_NOT_FOUND, 413: "body too large"},
    ),
    Operation(
        "GET",
        "/v1/runs/{run_id}/tokens",
        "A run's AI token usage",
        "runs",
        s.data(s.ref("RunTokens")),
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/conversations/{conversation_id}/runs",
        "A conversation's runs, oldest first",
        "runs",
        s.page(s.ref("Run")),
        query=(_CURSOR, _LIMIT),
    ),
    Operation(
        "POST",
        "/v1/runs/{run_id}/stream",
        "Publish to a run's stream (SDK)",
        "streams",
        s.data(s.obj({"seqs": s.array(s.INTEGER)}, "seqs")),
        body=s.ANY,
        body_required=True,
        errors={**_NOT_FOUND, 409: "the run has ended", 413: "message too large"},
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
            _p("topic", s.STRING),
            _p("after", {"type": "integer", "minimum": 0}, "the last seq read"),
            _p("wait", {"type": "number", "minimum": 0, "maximum": 60}),
            _p("limit", {"type": "integer", "minimum": 1}),
        ),
        errors={**_NOT_FOUND, 429: "too many readers"},
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
        body=_START,
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
        errors={**_NOT_FOUND, 409: "`lease_lost`", 413: "body too large"},
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
        errors={**_NOT_FOUND, 409: "`lease_lost`", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/checkpoint/{run_id}/async",
        "Record step results (SDK)",
        "sdk",
        s.obj({"ok": s.BOOLEAN}, "ok"),
        body=s.ANY,
        body_required=True,
        errors={**_NOT_FOUND, 409: "the call was lost", 413: "body too large"},
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
    # events
    Operation(
        "POST",
        "/v1/events",
        "Send events",
        "events",
        s.data(s.obj({"ids": s.array(s.STRING)}, "ids")),
        body={"anyOf": [s.OBJECT, s.array(s.OBJECT)], "description": "an event or a list"},
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
            _p("name", s.STRING),
            _p("received_after", _TIME),
            _p("received_before", _TIME),
            _p("expression", s.STRING, "a CEL expression over `event`"),
            _p("scan", {"type": "integer", "minimum": 1}, "events to scan for `expression`"),
            _CURSOR,
            _LIMIT,
            _p("internal", s.BOOLEAN, "false: leave out the engine's own events (true)"),
            _p("runs", s.BOOLEAN, "true: each event with the runs it started (false)"),
            _p(
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
        errors=_NOT_FOUND,
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
        errors={**_NOT_FOUND, 409: "the engine's own events are not replayed"},
    ),
    # functions
    Operation(
        "GET",
        "/v1/functions",
        "List functions",
        "functions",
        s.data(s.array(s.ref("Function"))),
        links=_FUNCTION_LINKS,
    ),
    Operation(
        "POST",
        "/v1/functions/{function_id:path}/pause",
        "Pause a function",
        "functions",
        s.data(s.obj({"function_id": s.STRING, "paused": s.nullable(s.ref("Pause"))}, "paused")),
        body=s.obj(
            {"crons": {"enum": ["queue", "skip"]}, "reason": {"type": "string", "maxLength": 1000}}
        ),
        errors=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/functions/{function_id:path}/resume",
        "Resume a paused function",
        "functions",
        s.data(s.obj({"function_id": s.STRING, "paused": {"type": "null"}}, "paused")),
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/functions/{function_id:path}/metrics",
        "A function's run figures per time bucket",
        "functions",
        s.data(s.ref("FunctionMetrics")),
        query=_METRICS_WINDOW,
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/crons",
        "Every cron trigger: its next ticks, its queued and missed ticks, its last runs",
        "functions",
        s.obj({"data": s.array(s.ref("CronTrigger")), "metadata": s.obj({"now": s.TIME})}, "data"),
    ),
    Operation(
        "GET",
        "/v1/queue",
        "Runs and calls in flight, waiting and throttled, per function and concurrency key",
        "functions",
        s.obj(
            {
                "data": s.obj(
                    {
                        "functions": s.array(s.ref("FunctionQueue")),
                        "keys": s.array(s.ref("ConcurrencyKey")),
                    },
                    "functions",
                    "keys",
                ),
                "metadata": s.obj({"now": s.TIME}),
            },
            "data",
        ),
    ),
    Operation(
        "GET",
        "/v1/functions/{function_id:path}/tokens",
        "A function's AI token usage per time bucket",
        "functions",
        s.data(s.ref("FunctionTokens")),
        query=_WINDOW,
        errors=_NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/token-budgets/{budget}",
        "The tokens charged to a budget in the current period",
        "functions",
        s.data(
            s.obj(
                {
                    "budget": s.STRING,
                    "key": s.STRING,
                    "period_seconds": s.NUMBER,
                    "window_start": s.TIME,
                    "window_end": s.TIME,
                    "window_end_epoch": s.NUMBER,
                    "used": s.INTEGER,
                    "now": s.TIME,
                },
                "budget",
                "key",
                "used",
                "window_start",
                "window_end",
            )
        ),
        query=(
            _p("key", s.STRING, "the budget's key"),
            _p("period", {"type": "integer", "minimum": 1}, "seconds"),
        ),
    ),
    # apps
    Operation("GET", "/v1/apps", "List apps", "apps", s.data(s.array(s.ref("App")))),
    Operation(
        "POST",
        "/v1/apps/sync",
        "Sync one app by URL, or every known app (no body)",
        "apps",
        s.data({"anyOf": [s.ref("SyncResult"), s.array(s.ref("SyncResult"))]}),
        body=s.obj({"url": {"type": "string", "format": "uri"}}, "url"),
    ),
    Operation(
        "GET",
        "/v1/apps/{app_id}/versions",
        "An app's registered versions",
        "apps",
        s.data(
            s.array(
                s.obj(
                    {
                        "version": s.STRING,
                        "url": s.nullable(s.STRING),
                        "synced_at": s.nullable(s.TIME),
                        "registered_at": s.nullable(s.TIME),
                        "latest": s.BOOLEAN,
                        "live_runs": s.INTEGER,
                        "functions": s.INTEGER,
                    },
                    "version",
                    "latest",
                    "live_runs",
                )
            )
        ),
        errors=_NOT_FOUND,
    ),
    Operation(
        "DELETE",
        "/v1/apps/{app_id}/versions/{version}",
        "Retire an app version",
        "apps",
        s.data(s.OBJECT),
        query=(_p("force", {"type": "boolean"}, "move its live runs to the latest version"),),
        errors={**_NOT_FOUND, 409: "runs on it are live (`live_runs`), or it is the latest"},
    ),
    Operation(
        "GET",
        "/v1/apps/{app_id}/workers",
        "An app's connected workers",
        "apps",
        s.data(s.array(s.ref("Worker"))),
    ),
    Operation(
        "GET", "/v1/connect/workers", "Connected workers", "apps", s.data(s.array(s.ref("Worker")))
    ),
    Operation(
        "POST",
        "/v1/deploy-checks",
        "Upload a deploy check's report (CI)",
        "apps",
        s.data(s.obj({"id": s.STRING, "received_at": s.TIME}, "id")),
        status=201,
        body=s.obj({"format": {"const": "stepline.deploy-check/1"}}, "format"),
        body_required=True,
        errors={413: "report too large"},
    ),
    Operation(
        "GET",
        "/v1/deploy-checks",
        "Deploy-check reports, newest first",
        "apps",
        s.data(
            s.array(
                s.obj(
                    {
                        "id": s.STRING,
                        "received_at": s.TIME,
                        "app_ids": s.array(s.STRING),
                        "ok": s.BOOLEAN,
                        "counts": s.OBJECT,
                        "report": s.OBJECT,
                    },
                    "id",
                    "ok",
                )
            )
        ),
        query=(
            _p("app_id", s.STRING),
            _p("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
        ),
    ),
    # the audit log
    Operation(
        "GET",
        "/v1/audit",
        "Who did what: the audit log, newest first (admins)",
        "audit",
        s.page(
            s.obj(
                {
                    "id": s.STRING,
                    "at": s.TIME,
                    "principal": s.STRING,
                    "role": s.nullable(s.STRING),
                    "credential": s.STRING,
                    "via": s.nullable(s.STRING),
                    "action": s.STRING,
                    "target": s.STRING,
                    "outcome": {"type": "string", "enum": ["ok", "refused", "failed"]},
                    "status": s.INTEGER,
                },
                "id",
                "at",
                "principal",
                "action",
                "outcome",
                "status",
            )
        ),
        query=(_p("principal", s.STRING, "one principal's entries"), _CURSOR, _LIMIT),
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
        errors=_NOT_FOUND,
    ),
    # bulk actions
    Operation(
        "POST",
        "/v1/bulk/cancel",
        "Cancel every run a filter matches",
        "bulk",
        s.data(s.ref("BulkAction")),
        status=202,
        also=(200,),
        body=_BULK_START,
        links=_BULK_LINKS,
    ),
    Operation(
        "POST",
        "/v1/bulk/replay",
        "Replay every run a filter matches",
        "bulk",
        s.data(s.ref("BulkAction")),
        status=202,
        also=(200,),
        body=_BULK_START,
        links=_BULK_LINKS,
    ),
    Operation(
        "GET",
        "/v1/bulk",
        "Bulk actions, newest first",
        "bulk",
        s.page(s.ref("BulkAction")),
        query=(_CURSOR, _LIMIT),
    ),
    Operation(
        "GET",
        "/v1/bulk/{bulk_id}",
        "A bulk action's progress",
        "bulk",
        s.data(s.ref("BulkAction")),
        errors=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/bulk/{bulk_id}/cancel",
        "Stop a bulk action before its next batch",
        "bulk",
        s.data(s.ref("BulkAction")),
        errors=_NOT_FOUND,
    ),
    # signals and approvals
    Operation(
        "POST",
        "/v1/runs/{run_id}/signals/{name}",
        "Signal a run's wait",
        "signals",
        _RUN_ID,
        body=s.obj({"data": s.ANY}),
        errors={404: "nothing waits for it", 409: "already received", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/signals",
        "Signal a wait by its key or token",
        "signals",
        _RUN_ID,
        body=s.obj({"signal": s.STRING, "data": s.ANY}, "signal"),
        body_required=True,
        errors={404: "nothing waits for it", 409: "already received", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/signals/hooks/{token}",
        "Signal the wait a token names (the token is the credential)",
        "signals",
        _RUN_ID,
        body=s.ANY,
        errors={
            404: "no run waits for this token",
            409: "already received",
            413: "body too large",
            429: "too many misses or requests",
        },
    ),
    Operation(
        "GET",
        "/v1/approvals",
        "Pending approvals",
        "approvals",
        s.page(s.ref("Approval")),
        query=(_p("function_id", s.STRING), _p("app_id", s.STRING), _CURSOR, _LIMIT),
    ),
    Operation(
        "GET",
        "/v1/approvals/{approval_id}",
        "An approval, pending or decided",
        "approvals",
        s.data(s.ref("Approval")),
        errors=_NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/approvals/{approval_id}/approve",
        "Approve a tool call",
        "approvals",
        s.data(s.ref("Approval")),
        body=_DECISION,
        errors={**_NOT_FOUND, 409: "already decided"},
    ),
    Operation(
        "POST",
        "/v1/approvals/{approval_id}/reject",
        "Reject a tool call",
        "approvals",
        s.data(s.ref("Approval")),
        body=_DECISION,
        errors={**_NOT_FOUND, 409: "already decided"},
    ),
    # the contract itself
    Operation(
        "GET",
        "/v1/openapi.json",
        "This document",
        "meta",
        s.obj({"openapi": s.STRING, "paths": s.OBJECT}, "openapi", "paths"),
    ),
)

_BY_KEY = {(op.method, op.path): op for op in OPERATIONS}


def operation(method: str, path: str) -> Operation | None:
    """The operation declared for a route of the access table, or None."""
    return _BY_KEY.get((method, path))
