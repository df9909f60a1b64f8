"""REST v1 for deploy-check reports: a CI job uploads what its deploy check found, and the
apps page shows each app's newest.

``POST /v1/deploy-checks`` stores one ``stepline.deploy-check/1`` report (at most 1 MiB,
else 413; its top level checked, 400 naming what is wrong) and answers 201 with its id
and when it was received. ``GET /v1/deploy-checks?app_id=X&limit=N`` lists the stored
reports newest first (of one app when ``app_id`` is given; ``limit`` 1 to 100, default
20). Each app keeps its newest 100 (``_store/deploy_checks``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import starlette.requests
import starlette.responses

from stepline import _json, _serde
from stepline._protocol import durations
from stepline.engine import _ids
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._store.deploy_checks import DeployCheck

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: The report's ``format``; any other is refused.
FORMAT = "stepline.deploy-check/1"
#: The largest report accepted, in bytes.
MAX_BYTES = 1024 * 1024
#: ``GET``'s page size when none is asked, and the largest it takes.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: The keys of every ``counts`` object (whole numbers >= 0).
COUNTS = ("runs", "ok", "diverged", "failed", "inconclusive")


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def upload(request: Request) -> Response:
        raw = await wire.read_body(request, min(MAX_BYTES, engine.settings.max_body_bytes))
        report = wire.json_body(raw)
        app_ids = checked(report)
        now = engine.clock.now()
        check = DeployCheck(
            check_id=_ids.ulid(int(now * 1000)),
            received_at=now,
            app_ids=app_ids,
            ok=bool(report["ok"]),
            counts=_json.dumps(report["counts"]),
            report=_json.dumps(report),
        )
        await engine.store.atomic(lambda tx: tx.deploy_checks.put_check(check))
        shown = {"id": check.check_id, "received_at": views.timestamp(now)}
        return wire.json_response(views.data(shown), 201)

    async def listed(request: Request) -> Response:
        app_id = request.query_params.get("app_id") or None
        limit = _limit(request.query_params.get("limit"))
        found = await engine.store.read(lambda tx: tx.deploy_checks.list_checks(app_id, limit))
        return wire.json_response(views.data([view(c) for c in found]))

    return [("POST", "/v1/deploy-checks", upload), ("GET", "/v1/deploy-checks", listed)]


def view(check: DeployCheck) -> dict[str, Any]:
    """A stored report as ``GET /v1/deploy-checks`` shows it: the engine's fields and the
    report as it was uploaded."""
    return {
        "id": check.check_id,
        "received_at": views.timestamp(check.received_at),
        "app_ids": list(check.app_ids),
        "ok": check.ok,
        "counts": _serde.loads(check.counts),
        "report": _serde.loads(check.report),
    }


def checked(report: Any) -> tuple[str, ...]:
    """The apps a report covers, sorted, once its top level is what a deploy check writes.

    Raises:
        ApiError: 400 naming the first field that is missing or of the wrong kind.
    """
    if not isinstance(report, dict):
        raise ApiError(400, f"a deploy-check report is a JSON object, got {_kind(report)}")
    if report.get("format") != FORMAT:
        raise ApiError(400, f"format: want {FORMAT!r}, got {report.get('format')!r}")
    for key in ("checked_at", "target"):
        if not isinstance(report.get(key), str) or not report[key]:
            raise ApiError(400, f"{key}: want a non-empty string, got {report.get(key)!r}")
    try:
        durations.parse_timestamp(report["checked_at"])
    except ValueError:
        raise ApiError(
            400, f"checked_at: want an RFC 3339 time, got {report['checked_at']!r}"
        ) from None
    if not isinstance(report.get("ok"), bool):
        raise ApiError(400, f"ok: want true or false, got {report.get('ok')!r}")
    _counts(report.get("counts"), "counts")
    functions = report.get("functions")
    if not isinstance(functions, list):
        raise ApiError(400, f"functions: want a list, got {_kind(functions)}")
    apps: set[str] = set()
    for n, fn in enumerate(functions):
        where = f"functions[{n}]"
        if not isinstance(fn, dict):
            raise ApiError(400, f"{where}: want an object, got {_kind(fn)}")
        for key in ("function_id", "app_id"):
            if not isinstance(fn.get(key), str) or not fn[key]:
                raise ApiError(400, f"{where}.{key}: want a non-empty string, got {fn.get(key)!r}")
        _counts(fn.get("counts"), f"{where}.counts")
        if not isinstance(fn.get("results"), list):
            raise ApiError(400, f"{where}.results: want a list, got {_kind(fn.get('results'))}")
        apps.add(fn["app_id"])
    return tuple(sorted(apps))


def _counts(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ApiError(400, f"{where}: want an object of {', '.join(COUNTS)}, got {_kind(value)}")
    for key in COUNTS:
        number = value.get(key)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ApiError(400, f"{where}.{key}: want a whole number >= 0, got {number!r}")


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not (
        1 <= int(text) <= MAX_LIMIT
    ):
        raise ApiError(400, f"limit: want an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
