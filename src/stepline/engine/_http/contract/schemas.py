"""JSON Schema (OpenAPI 3.1's dialect) for what the REST API reads and answers.

Builders for the few shapes the declarations repeat (an object, a nullable value, a
``{"data": ...}`` wrapper, a page) and the shared components: the one error object every
route answers a refusal with, and the records ``views`` renders (a run, a step, an
event...). Pure data: ``operations`` declares each route with these, ``document`` turns
the declarations into the OpenAPI document.

Objects are open (``additionalProperties`` left out): a field added within ``/v1`` is a
compatible change, so a client must ignore fields it does not know (docs/api.md).
"""

from __future__ import annotations

from typing import Any

from stepline._status import RunStatus
from stepline.engine._model import StepStatus

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
ANY: Schema = {}
#: any JSON object (``additionalProperties`` said, so that generators type its values as
#: anything, not as nothing: openapi-typescript's ``Record<string, never>``)
OBJECT: Schema = {"type": "object", "additionalProperties": True}
#: an RFC 3339 time with milliseconds and ``Z`` (``views.timestamp``)
TIME: Schema = {"type": "string", "format": "date-time"}


def ref(name: str) -> Schema:
    """A reference to the component ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    if set(schema) <= {"type", "additionalProperties"} and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    """A list of ``items``."""
    return {"type": "array", "items": items}


def obj(properties: dict[str, Schema], *required: str, description: str = "") -> Schema:
    """An open object with ``properties``, of which ``required`` must be present."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def data(value: Schema) -> Schema:
    """A single result as Inngest's REST API wraps it: ``{"data": value}``."""
    return obj({"data": value}, "data")


def page(item: Schema, **metadata: Schema) -> Schema:
    """A paginated list: ``{"data": [...], "metadata": {"next_cursor", ...}}``."""
    meta = obj({"next_cursor": nullable(STRING), **metadata}, "next_cursor")
    return obj({"data": array(item), "metadata": meta}, "data", "metadata")


RUN_STATUS: Schema = {"type": "string", "enum": [status.value for status in RunStatus]}
STEP_STATUS: Schema = {"type": "string", "enum": [status.value for status in StepStatus]}

_ERROR = obj(
    {
        "code": {
            "type": "string",
            "description": "a stable name to act on: the refusal's own (`endpoint_only`, "
            "`run_id_taken`, `lease_lost`, `database_unavailable`...), else the status's "
            "(`bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`...)",
        },
        "message": {"type": "string", "description": "what is wrong, for people"},
        "details": {
            **OBJECT,
            "description": "what the refusal says beyond its message (empty when nothing): "
            "a run query's `reason`, `column`, `line` and `position` (0-based); otherwise "
            "the fields below, as they are at the top level",
        },
        "error": {
            "type": "string",
            "description": "`message` again, for clients written before `message`",
        },
        "event_id": {"type": "string", "description": "409 of a skipped start: its event"},
        "live_runs": {"type": "integer", "description": "409 of a version retirement"},
        "problems": {"description": "400 of an approval's args: each problem"},
        "status": {"type": "integer", "description": "503: the status, repeated"},
        "cause": {"type": "string", "description": "503: the database fault"},
        "retry_after": {"type": "integer", "description": "503: seconds (and Retry-After)"},
        "what_to_do": {"type": "string", "description": "503: advice for the operator"},
    },
    "code",
    "message",
    "details",
    "error",
    description="Every refusal, on every route: `code`, `message` and `details` always "
    "(and `error`, the message again); a route's extra fields are listed here, stay "
    "optional, and are in `details` too.",
)

_RUN = obj(
    {
        "run_id": STRING,
        "function_id": STRING,
        "app_id": STRING,
        "status": RUN_STATUS,
        "event_ids": array(STRING),
        "event_names": array(STRING),
        "run_started_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "created_at": nullable(TIME),
        "output": ANY,
        "cancel_reason": nullable(STRING),
        "origin": nullable(STRING),
        "parent_run_id": nullable(STRING),
        "parent_step_id": nullable(STRING),
        "started_by": nullable(STRING),
        "waiting": nullable(OBJECT),
        "app_version": nullable(STRING),
        "notices": array(ANY),
        "replay_of": nullable(STRING),
        "replay_from_step": nullable(STRING),
        "replay_from_step_name": nullable(STRING),
        "attributes": {"type": "object", "additionalProperties": STRING},
        "events": array(OBJECT),
    },
    "run_id",
    "function_id",
    "app_id",
    "status",
    "event_ids",
    "created_at",
    "attributes",
    description="A run (`events` only on a single run's view).",
)

_STEP = obj(
    {
        "id": STRING,
        "name": nullable(STRING),
        "op": nullable(STRING),
        "kind": nullable(STRING),
        "status": STEP_STATUS,
        "attempts": INTEGER,
        "max_attempts": nullable(INTEGER),
        "next_retry_at": nullable(TIME),
        "mode": nullable(STRING),
        "started_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "duration_ms": nullable(INTEGER),
        "wait": nullable(OBJECT),
        "output": ANY,
        "error": ANY,
    },
    "id",
    "status",
    "attempts",
    description="A step of a run's timeline: `output`, or `error` when it failed.",
)

_ATTEMPT = obj(
    {
        "step_id": STRING,
        "attempt": INTEGER,
        "status": {"type": "string", "enum": ["Completed", "Failed"]},
        "started_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "duration_ms": nullable(INTEGER),
        "error": ANY,
        "retry_at": nullable(TIME),
    },
    "step_id",
    "attempt",
    "status",
)

_TRANSITION = obj(
    {
        "seq": INTEGER,
        "at": TIME,
        "type": STRING,
        "step_id": nullable(STRING),
        "step_name": nullable(STRING),
        "detail": OBJECT,
    },
    "seq",
    "at",
    "type",
    "step_id",
    "step_name",
    "detail",
    description="One recorded transition of a run or of one of its steps.",
)

_SAVED_VIEW = obj(
    {"name": STRING, "query": STRING, "columns": array(STRING), "updated_at": TIME},
    "name",
    "query",
    "columns",
    description="A named run query and the runs page's columns for it.",
)

_EVENT = obj(
    {
        "internal_id": STRING,
        "id": nullable(STRING),
        "name": STRING,
        "data": ANY,
        "ts": nullable(NUMBER),
        "received_at": nullable(TIME),
        "user": ANY,
        "v": ANY,
        "replay_of": nullable(STRING),
        "replays": array(STRING),
        "runs": array(
            obj(
                {"run_id": STRING, "function_id": STRING, "status": RUN_STATUS},
                "run_id",
                "function_id",
                "status",
                description="a run the event started (the list's `runs=true`)",
            )
        ),
    },
    "internal_id",
    "name",
)

_FUNCTION = obj(
    {
        "function_id": STRING,
        "app_id": STRING,
        "name": nullable(STRING),
        "triggers": array(OBJECT),
        "updated_at": nullable(TIME),
        "config": OBJECT,
        "paused": nullable(ref("Pause")),
    },
    "function_id",
    "app_id",
    "triggers",
)

_PAUSE = obj(
    {"at": nullable(TIME), "crons": {"enum": ["queue", "skip"]}, "reason": nullable(STRING)},
    "at",
    "crons",
)

_APP = obj(
    {
        "app_id": STRING,
        "url": nullable(STRING),
        "sdk": nullable(STRING),
        "framework": nullable(STRING),
        "synced_at": nullable(TIME),
        "error": nullable(STRING),
        "mode": nullable(STRING),
        "functions": INTEGER,
    },
    "app_id",
    "functions",
)

_SYNC = obj(
    {"url": STRING, "ok": BOOLEAN, "status": nullable(INTEGER), "error": nullable(STRING)},
    "url",
    "ok",
)

_BULK = obj(
    {
        "bulk_id": STRING,
        "action": {"enum": ["cancel", "replay"]},
        "filter": OBJECT,
        "status": STRING,
        "done": BOOLEAN,
        "idempotency_key": nullable(STRING),
        "created_at": nullable(TIME),
        "updated_at": nullable(TIME),
        "cursor": nullable(STRING),
        "matched": INTEGER,
        "applied": INTEGER,
        "skipped": INTEGER,
        "error": nullable(STRING),
        "created": BOOLEAN,
    },
    "bulk_id",
    "action",
    "status",
    "done",
)

_APPROVAL = obj(
    {
        "approval_id": STRING,
        "run_id": STRING,
        "step_id": nullable(STRING),
        "step": nullable(STRING),
        "function_id": nullable(STRING),
        "app_id": nullable(STRING),
        "started_by": nullable(STRING),
        "status": STRING,
        "agent": ANY,
        "tool": ANY,
        "tool_call_id": ANY,
        "args": ANY,
        "schema": ANY,
        "description": ANY,
        "metadata": ANY,
        "on_timeout": ANY,
        "budget": ANY,
        "asked_at": nullable(TIME),
        "until": nullable(TIME),
        "decision": nullable(OBJECT),
    },
    "approval_id",
    "run_id",
    "status",
)


def _figures(**more: Schema) -> Schema:
    """A bucket's or the window's run figures (``function_metrics.render``)."""
    spread = {
        f"{name}_{figure}": nullable(NUMBER) if figure != "count" else INTEGER
        for name in ("duration", "delay")
        for figure in ("count", "p50_ms", "p95_ms", "max_ms")
    }
    counts = ("started", "completed", "failed", "cancelled")
    return obj(
        {**dict.fromkeys(counts, INTEGER), "failure_rate": nullable(NUMBER), **spread, **more},
        *counts,
        "failure_rate",
    )


_COUNTS = {"type": "object", "additionalProperties": INTEGER}
_METRICS = obj(
    {
        "function_id": STRING,
        "window": nullable(STRING),
        "since": TIME,
        "until": TIME,
        "bucket_seconds": NUMBER,
        "now": TIME,
        "buckets": array(_figures(start=TIME, queued=INTEGER)),
        "totals": _figures(),
        "queue": obj(
            {
                "queued_runs": INTEGER,
                "running_runs": INTEGER,
                "held": _COUNTS,
                "jobs": _COUNTS,
            },
            "queued_runs",
            "running_runs",
        ),
    },
    "function_id",
    "since",
    "until",
    "bucket_seconds",
    "buckets",
    "totals",
    "queue",
    description="A function's run figures per time bucket, the window's totals, the queue now.",
)

_RECORDED_STEP = obj(
    {
        "id": STRING,
        "name": STRING,
        "op": STRING,
        "status": STEP_STATUS,
        "mode": STRING,
        "attempts": INTEGER,
        "started_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "memo": {"description": "what the SDK receives for the step on replay (done steps)"},
        "dropped": {"type": "boolean", "description": "its output was left out"},
    },
    "id",
    "name",
    "op",
    "status",
)
_JOURNAL = obj(
    {
        "format": {"type": "string", "const": "stepline.run/1"},
        "run_id": STRING,
        "function_id": STRING,
        "app_id": STRING,
        "app_version": nullable(STRING),
        "status": RUN_STATUS,
        "created_at": nullable(TIME),
        "started_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "exported_at": nullable(TIME),
        "events": array(OBJECT),
        "stack": array(STRING),
        "steps": array(_RECORDED_STEP),
        "output": {"description": "the return value once completed, the error once failed"},
        "redacted": array(STRING),
    },
    "format",
    "run_id",
    "function_id",
    "app_id",
    "status",
    "events",
    "stack",
    "steps",
    description="A run's record: what `stepline runs export` writes and `TestEnv.replay` plays.",
)

_TOKEN_SUMS: dict[str, Schema] = {
    "input_tokens": INTEGER,
    "output_tokens": INTEGER,
    "total_tokens": INTEGER,
    "requests": INTEGER,
}
_SUMS = obj(_TOKEN_SUMS, *_TOKEN_SUMS)
_RUN_TOKENS = obj(
    {
        "run_id": STRING,
        "function_id": STRING,
        **_TOKEN_SUMS,
        "models": {"type": "object", "additionalProperties": _SUMS},
        "steps": array(
            obj(
                {
                    "step_id": STRING,
                    "at": nullable(TIME),
                    "input_tokens": INTEGER,
                    "output_tokens": INTEGER,
                    "model": nullable(STRING),
                },
                "step_id",
                "input_tokens",
                "output_tokens",
            )
        ),
    },
    "run_id",
    "function_id",
    *_TOKEN_SUMS,
    "models",
    "steps",
    description="A run's model tokens: totals, per model, per step.",
)
_FUNCTION_TOKENS = obj(
    {
        "function_id": STRING,
        "window": nullable(STRING),
        "since": TIME,
        "until": TIME,
        "bucket_seconds": NUMBER,
        "now": TIME,
        "buckets": array(obj({"start": TIME, **_TOKEN_SUMS, "runs": INTEGER}, "start")),
        "totals": _SUMS,
        "models": {"type": "object", "additionalProperties": _SUMS},
    },
    "function_id",
    "since",
    "until",
    "bucket_seconds",
    "buckets",
    "totals",
    "models",
    description="A function's model tokens per time bucket, the window's totals, per model.",
)

_WORKER = obj(
    {
        "connection_id": STRING,
        "instance_id": STRING,
        "node": STRING,
        "sdk": STRING,
        "framework": nullable(STRING),
        "app_ids": array(STRING),
        "versions": {"type": "object", "additionalProperties": nullable(STRING)},
        "functions": array(STRING),
        "in_flight": INTEGER,
        "max_concurrency": nullable(INTEGER),
        "calls_sent": INTEGER,
        "connected_at": nullable(TIME),
        "last_heartbeat_at": nullable(TIME),
        "status": {"type": "string", "enum": ["ready", "connecting", "draining"]},
    },
    "connection_id",
    "node",
    "app_ids",
    "functions",
    "status",
    description="A Connect worker: its connection, apps, functions and calls in flight.",
)

_CRON_TRIGGER = obj(
    {
        "function_id": STRING,
        "app_id": STRING,
        "name": STRING,
        "cron": {"type": "string", "description": "the schedule, canonical"},
        "timezone": STRING,
        "jitter": NUMBER,
        "paused": nullable(ref("Pause")),
        "next_ticks": array(TIME),
        "queued_tick": nullable(TIME),
        "fires_at": nullable(TIME),
        "missed_ticks": {"type": "integer", "description": "overdue ticks still to fire"},
        "missed_since": nullable(TIME),
        "last_runs": array(
            obj(
                {
                    "run_id": STRING,
                    "status": RUN_STATUS,
                    "created_at": nullable(TIME),
                    "ended_at": nullable(TIME),
                },
                "run_id",
                "status",
            )
        ),
    },
    "function_id",
    "cron",
    "next_ticks",
    "missed_ticks",
    "last_runs",
    description="One cron trigger of a registered function.",
)

_FUNCTION_QUEUE = obj(
    {
        "function_id": STRING,
        "app_id": STRING,
        "name": STRING,
        "queued": INTEGER,
        "running": INTEGER,
        "throttled": INTEGER,
        "in_flight": INTEGER,
        "waiting": INTEGER,
        "limits": obj(
            {
                "concurrency": array(
                    obj({"limit": INTEGER, "scope": STRING, "key": nullable(STRING)})
                ),
                "throttle": nullable(OBJECT),
                "rate_limit": nullable(OBJECT),
            }
        ),
    },
    "function_id",
    "queued",
    "running",
    "throttled",
    "in_flight",
    "waiting",
    "limits",
    description="A function's live runs and calls, and its flow-control limits.",
)

_CONCURRENCY_KEY = obj(
    {
        "key": STRING,
        "function_id": nullable(STRING),
        "functions": array(STRING),
        "scope": STRING,
        "limit": nullable(INTEGER),
        "in_flight": INTEGER,
        "waiting": INTEGER,
    },
    "key",
    "in_flight",
    "waiting",
    description="A concurrency key with calls in flight or parked on it.",
)

#: the shared components, by name
COMPONENTS: dict[str, Schema] = {
    "Worker": _WORKER,
    "RunTokens": _RUN_TOKENS,
    "FunctionTokens": _FUNCTION_TOKENS,
    "RunJournal": _JOURNAL,
    "Error": _ERROR,
    "Run": _RUN,
    "Step": _STEP,
    "Attempt": _ATTEMPT,
    "Transition": _TRANSITION,
    "SavedView": _SAVED_VIEW,
    "Event": _EVENT,
    "Function": _FUNCTION,
    "Pause": _PAUSE,
    "App": _APP,
    "SyncResult": _SYNC,
    "BulkAction": _BULK,
    "Approval": _APPROVAL,
    "FunctionMetrics": _METRICS,
    "CronTrigger": _CRON_TRIGGER,
    "FunctionQueue": _FUNCTION_QUEUE,
    "ConcurrencyKey": _CONCURRENCY_KEY,
}
