"""The execution request the engine POSTs to an SDK. Pure."""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Sequence
from typing import Any

from stepline import _json
from stepline._protocol import headers, jcs, signing
from stepline._protocol.execution import CallContext, ExecutionRequest
from stepline.engine._model import Job, Run, StepRecord, stack_of

#: The Go server's ``MaxSDKRequestBodySize`` less 1 KiB: above it, SDKs fetch state.
MAX_INLINE_BYTES = 4 * 1024 * 1024 - 1024
SERVER_SDK = "stepline-engine"


@functools.lru_cache(maxsize=4096)
def call_url(step_url: str, function_id: str, step_id: str) -> str:
    """The registered step URL with ``fnId`` and ``stepId`` set for this call (a run's
    calls mostly share one: ``stepId=step``)."""
    base = _call_base(step_url, function_id)
    if base is None:  # a fragment: the query is not the URL's end
        return _with_query(step_url, [("fnId", function_id), ("stepId", step_id)])
    return f"{base}&{urllib.parse.urlencode([('stepId', step_id)])}"


@functools.lru_cache(maxsize=1024)
def _call_base(step_url: str, function_id: str) -> str | None:
    """``call_url`` up to ``stepId``, which comes last (a function's calls share it)."""
    if urllib.parse.urlsplit(step_url).fragment:
        return None
    return _with_query(step_url, [("fnId", function_id)])


def _with_query(url: str, extra: list[tuple[str, str]]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query + extra)))


def memos(steps: Sequence[StepRecord]) -> dict[str, Any]:
    """The ``steps`` map: the memo of every finished step."""
    return {s.step_id: s.memo for s in steps if s.status.done}


def built(
    run: Run,
    steps: Sequence[StepRecord],
    job: Job,
    *,
    max_attempts: int,
    checkpoint: bool,
    max_inline: int = MAX_INLINE_BYTES,
    endpoint: bool = False,
) -> tuple[dict[str, Any], bytes]:
    """The JSON body of one call (state too large to inline is left for the SDK to fetch)
    and that body as compact JSON: measuring its size encodes it, and that encoding is the
    one an unsigned call sends (``encode``), so the state is encoded once. ``endpoint``:
    the run is a durable endpoint's, whose handler is told its recorded starter."""
    ctx = _context(
        run, steps, job, max_attempts=max_attempts, checkpoint=checkpoint, endpoint=endpoint
    )
    events, steps_map = run.events, memos(steps)
    request = ExecutionRequest(events[0], events, steps_map, ctx, version=_version(run))
    body = request.to_wire()
    raw = _json.dumpb(body)
    if len(raw) > max_inline:
        body["steps"] = {}
        body["use_api"] = True
        body["ctx"]["use_api"] = True
        raw = _json.dumpb(body)
        if len(raw) > max_inline:
            body["events"] = []
            raw = _json.dumpb(body)
    return body, raw


def execution(
    run: Run,
    steps: Sequence[StepRecord],
    job: Job,
    *,
    max_attempts: int,
    checkpoint: bool,
    endpoint: bool = False,
) -> ExecutionRequest:
    """One call as the object an SDK in this process takes (``CommHandler.call_in_process``):
    ``built``'s request with all its state inline (no body, so no size limit), the events
    and memos a copy of their own (the function's code may change what it is given; the
    engine keeps its copies of a run's steps from one call to the next)."""
    ctx = _context(
        run, steps, job, max_attempts=max_attempts, checkpoint=checkpoint, endpoint=endpoint
    )
    events, steps_map = _json.loads(_json.dumpb((run.events, memos(steps))))
    return ExecutionRequest(events[0], events, steps_map, ctx, version=_version(run))


def _context(
    run: Run,
    steps: Sequence[StepRecord],
    job: Job,
    *,
    max_attempts: int,
    checkpoint: bool,
    endpoint: bool,
) -> CallContext:
    # a durable endpoint's handler reads its caller from here, never from the trigger
    # data (which is the recorded request); other functions' calls stay as Inngest's
    return CallContext(
        run_id=run.run_id,
        attempt=job.attempt,
        max_attempts=max_attempts,
        disable_immediate_execution=run.force_plan,
        step_id=job.step_id or "step",
        stack=stack_of(steps),  # the completion order is the steps' ``seq``
        fn_id=run.function_id,
        qi_id=job.call_id if checkpoint else None,
        request_id=job.job_id,
        started_by=run.started_by if endpoint else None,
    )


def _version(run: Run) -> int:
    return max(run.request_version, -1)


def encode(
    body: dict[str, Any],
    *,
    signing_key: str | None,
    now: float,
    server_kind: str = "dev",
    compact: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Serialise a call (canonical JSON when signed, as the Go server does) and its headers.
    ``compact``: ``body`` as compact JSON already (``built``), sent as is when unsigned."""
    out = {headers.CONTENT_TYPE: headers.JSON, headers.SERVER_KIND: server_kind}
    if signing_key is None:
        return (_json.dumpb(body) if compact is None else compact), out
    raw = jcs.canonicalize(body)
    out[headers.SIGNATURE] = signing.sign(raw, signing_key, now=now)
    return raw, out
