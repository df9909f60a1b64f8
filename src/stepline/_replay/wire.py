"""Replaying a recorded run against an app over its serve URL: any SDK that speaks the wire.

The check POSTs execution requests to the new app's serve endpoint as the engine would
(signed when a signing key is given), with ``disable_immediate_execution`` set, so the
app plans its next step rather than run it, and reads what it plans:

- A Stepline app answers the whole record in one call: its replay tracker reports a
  divergence in ``X-Stepline-Nondeterminism`` (``_execution.divergence``).
- Any other SDK (the official ``inngest`` SDKs) is walked through the record a prefix at
  a time: given the first *k* recorded steps, it must plan the *k+1*-th (among what it
  plans, for a parallel group). Where it plans another step, or returns, the recorded
  step is missing there. This is as much as the wire shows: the SDK does not say which
  memos it read, so a step reached again out of order shows as the first one missed.

Unlike the in-process check, the code outside steps runs in the app's process, for real,
as on any replay (docs/deploying.md).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from stepline._errors import SteplineError
from stepline._protocol import headers, jcs, signing
from stepline._protocol.execution import CallContext, ExecutionRequest
from stepline._replay.journal import ENGINE_OPS, Journal
from stepline._replay.verdict import RunVerdict, StepRef
from stepline._transport import effects

__all__ = ["AppUnreachableError", "check_flow"]


class AppUnreachableError(SteplineError):
    """The app's serve URL could not be reached, or refused the check's signature."""

    code = "app_unreachable"


def check_flow(
    url: str, journal: Journal, *, signing_key: str | None, timeout: float = 30.0
) -> effects.Flow[RunVerdict]:
    """One run's verdict from the app at ``url`` (its serve URL)."""
    waiting = [s.id for s in journal.pending() if s.op in ENGINE_OPS]
    recorded = journal.memos()
    expected = [*journal.stack, *(i for i in waiting if i not in recorded)]
    names = {s.id: s.name for s in journal.steps}
    memos = {**recorded, **{i: None for i in expected if i not in recorded}}
    answer = yield from _call(
        url, journal, memos, expected, signing_key=signing_key, timeout=timeout
    )
    if answer.sdk.startswith("stepline"):
        return _stepline_verdict(journal, answer, names)
    sdk = answer.sdk or "unknown"
    for k, step_id in enumerate(expected):
        given = {i: memos[i] for i in expected[:k]}
        answer = yield from _call(
            url, journal, given, expected[:k], signing_key=signing_key, timeout=timeout
        )
        if answer.status == 206 and step_id in answer.planned:
            continue
        missing = (StepRef(step_id, names.get(step_id, step_id)),)
        if answer.status == 206:
            new = tuple(StepRef(i, answer.planned[i]) for i in answer.planned)
            return RunVerdict.of(journal, "diverged", missing=missing, new=new, sdk=sdk)
        if answer.status == 200:
            return RunVerdict.of(
                journal,
                "diverged",
                missing=missing,
                error=f"the app's function returns after {k} recorded step(s)",
                sdk=sdk,
            )
        return RunVerdict.of(
            journal,
            "failed",
            missing=missing,
            error=f"the app answers {answer.status} after {k} recorded step(s): {answer.message}",
            sdk=sdk,
        )
    return RunVerdict.of(journal, "ok", sdk=sdk)


def _stepline_verdict(journal: Journal, answer: _Answer, names: Mapping[str, str]) -> RunVerdict:
    """A Stepline app's one-call verdict: its divergence header, else its status."""
    raw = answer.headers.get(headers.NONDETERMINISM)
    if raw:
        found = json.loads(raw)
        named = {**names, **answer.planned}

        def refs(key: str) -> tuple[StepRef, ...]:
            return tuple(StepRef(i, named.get(i, i)) for i in found.get(key) or [])

        return RunVerdict.of(
            journal,
            "diverged",
            missing=refs("missing"),
            reordered=refs("reordered"),
            new=refs("new"),
            sdk=answer.sdk,
        )
    if answer.status in (200, 206):
        return RunVerdict.of(journal, "ok", sdk=answer.sdk)
    if answer.error_name == "NetworkBlockedError":
        return RunVerdict.of(
            journal,
            "inconclusive",
            error=f"the code outside steps tried the network: {answer.message}",
            sdk=answer.sdk,
        )
    return RunVerdict.of(
        journal,
        "failed",
        error=f"the app answers {answer.status}: {answer.message}",
        sdk=answer.sdk,
    )


class _Answer:
    __slots__ = ("error_name", "headers", "message", "planned", "sdk", "status")

    def __init__(self, response: effects.HttpResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self.sdk = self.headers.get(headers.SDK, "")
        body: Any = None
        try:
            body = json.loads(response.body or b"null")
        except ValueError:
            body = None
        #: the ops the app plans: hashed id -> the step id the code gave
        self.planned: dict[str, str] = {}
        if self.status == 206 and isinstance(body, list):
            for op in body:
                if isinstance(op, dict) and isinstance(op.get("id"), str):
                    label = op.get("displayName") or op.get("name") or op["id"]
                    self.planned[op["id"]] = str(label)
        message = body.get("message") or body.get("error") if isinstance(body, dict) else None
        self.error_name = str(body.get("name") or "") if isinstance(body, dict) else ""
        self.message = str(message or (response.body or b"")[:200].decode("utf-8", "replace"))


def _call(
    url: str,
    journal: Journal,
    memos: dict[str, Any],
    stack: list[str],
    *,
    signing_key: str | None,
    timeout: float,
) -> effects.Flow[_Answer]:
    events = journal.events or [{"name": "", "data": {}}]
    ctx = CallContext(
        run_id=journal.run_id,
        disable_immediate_execution=True,
        stack=list(stack),
        fn_id=journal.function_id,
        dry_run=True,  # a Stepline app refuses its code the network (other SDKs ignore it)
    )
    body = ExecutionRequest(events[0], events, memos, ctx).to_wire()
    raw = jcs.canonicalize(body)
    sent = {headers.CONTENT_TYPE: headers.JSON, headers.SERVER_KIND: "dev"}
    if signing_key:
        sent[headers.SIGNATURE] = signing.sign(raw, signing_key, now=time.time())
        sent[headers.SERVER_KIND] = "cloud"
    target = _with_query(url, journal.function_id)
    response: effects.HttpResponse = yield effects.HttpRequest(
        "POST", target, sent, raw, timeout=timeout
    )
    if response.status == 0:
        raise AppUnreachableError(f"the app at {url} is unreachable: {response.error}")
    if response.status == 401:
        raise AppUnreachableError(
            f"the app at {url} refused the check's signature (401): pass the signing key "
            "it verifies with (--signing-key or STEPLINE_SIGNING_KEY)"
        )
    if response.status == 404 and b"function" not in (response.body or b"").lower():
        raise AppUnreachableError(f"nothing is served at {url} (404): give the app's serve URL")
    return _Answer(response)


def _with_query(url: str, function_id: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    query += [("fnId", function_id), ("stepId", "step")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
