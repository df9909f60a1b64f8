"""The apps' routes: sync, list, versions, deploy checks."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Operation, param
from stepline.engine._http.contract.operations.shared import NOT_FOUND

__all__ = ["OPERATIONS"]

_CHECK_COUNTS = s.obj(
    {
        name: {"type": "integer", "minimum": 0}
        for name in ("runs", "ok", "diverged", "failed", "inconclusive")
    },
    "runs",
    "ok",
    "diverged",
    "failed",
    "inconclusive",
)
#: what ``stepline deploy check --report`` writes (the engine checks its top level)
_DEPLOY_CHECK = s.obj(
    {
        "format": {"const": "stepline.deploy-check/1"},
        "checked_at": {"type": "string", "minLength": 1, "description": "RFC 3339"},
        "target": {"type": "string", "minLength": 1, "description": "the engine checked"},
        "ok": s.BOOLEAN,
        "counts": _CHECK_COUNTS,
        "functions": s.array(
            s.obj(
                {
                    "function_id": {"type": "string", "minLength": 1},
                    "app_id": {"type": "string", "minLength": 1},
                    "counts": _CHECK_COUNTS,
                    "results": s.array(s.OBJECT),
                },
                "function_id",
                "app_id",
                "counts",
                "results",
            )
        ),
    },
    "format",
    "checked_at",
    "target",
    "ok",
    "counts",
    "functions",
)

OPERATIONS: tuple[Operation, ...] = (
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
        errors=NOT_FOUND,
    ),
    Operation(
        "DELETE",
        "/v1/apps/{app_id}/versions/{version}",
        "Retire an app version",
        "apps",
        s.data(s.OBJECT),
        query=(param("force", {"type": "boolean"}, "move its live runs to the latest version"),),
        errors={**NOT_FOUND, 409: "runs on it are live (`live_runs`), or it is the latest"},
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
        body=_DEPLOY_CHECK,
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
            param("app_id", s.STRING),
            param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
        ),
    ),
)
