"""The runs list's query: ``GET /v1/runs?query=status == "Failed" && event.data.plan == "pro"``.

A query is a CEL expression over a run's fields (``_store/run_query``: the fields, and how
it becomes SQL). Where the compiled SQL means the whole expression (``exact``), the page is
one indexed query, as without a query. Otherwise the SQL only narrows (or selects every run
of the other filters) and the engine checks each run it reads against the expression, in
pages of ``BATCH`` newest first, examining at most ``scan`` runs per request
(``DEFAULT_SCAN``, up to ``MAX_SCAN``) in one read transaction on the store's thread. Such a
page says how far it read (``scanned``, ``scan_limit``, ``scan_complete``); when the scan
stopped at its limit, ``next_cursor`` goes on from the last run examined, so paging reads
on where the scan stopped.

A query that does not parse, reads an unknown field, or is too long or deep is a 400 with
``code: "invalid_query"`` and ``details`` locating the problem (``column``, ``line``,
``position``, ``reason``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from stepline.engine._engine import Engine
from stepline.engine._http import run_list, views
from stepline.engine._http.wire import ApiError
from stepline.engine._model import Run
from stepline.engine._store import RunFilter, Tx
from stepline.engine._store.run_query import QueryError, RunQuery, compile_query

#: runs examined per request by default, and at most (``?scan=``)
DEFAULT_SCAN = 5000
MAX_SCAN = 50_000
#: the most runs read per query of a scan
BATCH = 500


def compiled(text: str | None, now: float | None = None) -> RunQuery | None:
    """``?query=`` compiled (``now``: the request's time); None when absent or blank.

    Raises:
        ApiError: not a valid query (400, ``details`` locating the problem).
    """
    if text is None or not text.strip():
        return None
    try:
        return compile_query(text, time.time() if now is None else now)
    except QueryError as exc:
        raise invalid(exc) from None


def invalid(exc: QueryError) -> ApiError:
    """The 400 of a bad query, its location in ``details``."""
    message = f"{exc}; see docs/dashboard.md#finding-runs for the fields and operators"
    body = {"error": message, "code": "invalid_query", "details": exc.details()}
    return ApiError(400, message, body)


def scan_limit(text: str | None) -> int:
    """``?scan=``: how many runs a query that needs checking examines, 1 to ``MAX_SCAN``."""
    if text is None or text == "":
        return DEFAULT_SCAN
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= MAX_SCAN:
        raise ApiError(400, f"scan: want an integer from 1 to {MAX_SCAN}, got {text!r}")
    return int(text)


@dataclasses.dataclass(frozen=True, slots=True)
class RunScan:
    """What a scan found: matching runs (newest first) and how far it read."""

    found: list[Run]
    scanned: int
    last: str | None
    complete: bool


def narrowed(where: RunFilter, query: RunQuery) -> RunFilter:
    """``where`` with the query's SQL condition added."""
    if query.where is None:
        return where
    return dataclasses.replace(where, condition=query.where, condition_args=query.args)


def scan(tx: Tx, where: RunFilter, query: RunQuery, budget: int, want: int) -> RunScan:
    """Runs that ``where`` selects and ``query`` matches, newest first, from
    ``where.cursor`` on: up to ``want``, examining at most ``budget`` runs."""
    found: list[Run] = []
    scanned, cursor = 0, where.cursor
    reads_attributes = "attributes" in query.program.variables
    size = want  # then twice as many each read, up to BATCH: a query that matches most
    # runs reads about a page, and a narrowing condition that few rows pass is not
    # walked further than needed
    while scanned < budget and len(found) < want:
        batch = min(size, BATCH, budget - scanned)
        size *= 2
        page = tx.list_runs(dataclasses.replace(where, cursor=cursor, limit=batch))
        attributes = {}
        if page and reads_attributes:  # the matches' own are read for the page below
            attributes = tx.attributes.get_attributes([r.run_id for r in page])
        for run in page:
            run.attributes = attributes.get(run.run_id, {})
            scanned, cursor = scanned + 1, run.run_id
            if query.matches(run):
                found.append(run)
                if len(found) == want:
                    return RunScan(found, scanned, cursor, complete=False)
        if len(page) < batch:
            return RunScan(found, scanned, cursor, complete=True)
    return RunScan(found, scanned, cursor, complete=False)


async def page(
    engine: Engine, where: RunFilter, limit: int, query: RunQuery, scan_text: str | None
) -> dict[str, Any]:
    """A page of the runs ``query`` matches (``where.limit`` is ``limit + 1``)."""
    where = narrowed(where, query)
    if query.exact:
        body = await run_list.page(engine, where, limit)
        body["metadata"]["exact"] = True
        return body
    budget = scan_limit(scan_text)

    def work(tx: Tx) -> RunScan:
        result = scan(tx, where, query, budget, limit + 1)
        if not reads_attributes and result.found:
            shown = result.found[:limit]
            attributes = tx.attributes.get_attributes([r.run_id for r in shown])
            for run in shown:
                run.attributes = attributes.get(run.run_id, {})
        return result

    reads_attributes = "attributes" in query.program.variables
    result = await engine.store.read(work)
    shown = result.found[:limit]
    if len(result.found) > limit:
        after: str | None = shown[-1].run_id
    else:
        after = None if result.complete else result.last
    body = {
        "data": [views.run(run) for run in shown],
        "metadata": {
            "next_cursor": after,
            "exact": False,
            "scanned": result.scanned,
            "scan_limit": budget,
            "scan_complete": result.complete,
        },
    }
    await run_list.add_waiting(engine, body)
    return body
