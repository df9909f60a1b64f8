"""Delivering one outbox row to the engine, and what its answer means for the row.

An ``event`` row goes to the event API (``POST /e/{key}``) with the row's
``X-Inngest-Event-Id-Seed``: a redelivery gets the same ids and the engine stores and fans
out nothing twice. A ``start`` row goes to ``POST /v1/functions/{id}/runs`` with the row's
``run_id``: a redelivery answers the same run (``created`` false).

Answers sort into three outcomes (pure: ``outcome``):

- delivered: 2xx, or a start flow control turned away (409 without ``run_id_taken``: the
  engine decided, as it would have for ``client.start``; the reason is kept in
  ``last_error``);
- rejected (the row is at fault: 400, 404 unknown function, 409 ``run_id_taken``, 413): the
  row is retried with backoff, and rows after it go on;
- unavailable (the engine or its configuration is: transport errors, 5xx, 401/403, 408,
  429): the batch stops and the relay backs off; nothing after the row is delivered first.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import httpx

from stepline._protocol import signing

__all__ = ["Delivered", "DeliveryOutcome", "HttpDeliverer", "outcome"]

SEED_HEADER = "X-Inngest-Event-Id-Seed"
#: the engine's route for many rows in one request (``stepline.engine._relay.http``)
BATCH_PATH = "/v1/outbox/deliveries"
#: row bodies per batch request, at most (a row larger than this goes alone)
BATCH_BYTES = 1024 * 1024
_UNAVAILABLE = frozenset({401, 403, 408, 425, 429})


class DeliveryOutcome(enum.Enum):
    """What an answer means for the row."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"


@dataclasses.dataclass(frozen=True, slots=True)
class Delivered:
    """The outcome of one delivery and a note for ``last_error`` (None: nothing to say)."""

    outcome: DeliveryOutcome
    note: str | None = None


def outcome(kind: str, status: int, text: str) -> Delivered:
    """What the engine's answer ``status`` (body ``text``) to a ``kind`` row means."""
    brief = f"{status} {text.strip()[:500]}"
    if 200 <= status < 300:
        return Delivered(DeliveryOutcome.DELIVERED)
    if status >= 500 or status in _UNAVAILABLE:
        return Delivered(DeliveryOutcome.UNAVAILABLE, brief)
    if kind == "start" and status == 409 and "run_id_taken" not in text:
        return Delivered(DeliveryOutcome.DELIVERED, f"skipped by the engine: {brief}")
    return Delivered(DeliveryOutcome.REJECTED, brief)


class HttpDeliverer:
    """Posts rows to one engine over a pooled ``httpx.Client``.

    Args:
        engine_url: the engine's base URL.
        event_key: the event key for ``/e/{key}`` (any in dev mode).
        signing_key: the signing key the start route's bearer token is made from
            (production engines); None in dev mode.
        timeout: seconds per request.
        http: a client to use instead of a new one (tests).
        batches: use the engine's batch route (``deliver_batch``); False posts row by row.
    """

    def __init__(
        self,
        engine_url: str,
        *,
        event_key: str,
        signing_key: str | None = None,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
        batches: bool = True,
    ) -> None:
        self.base = engine_url.rstrip("/")
        self.event_key = event_key
        self._auth = {} if not signing_key else {"Authorization": signing.bearer_token(signing_key)}
        self.http = http or httpx.Client(timeout=timeout)
        #: the engine takes batches (``POST /v1/outbox/deliveries``) until it says otherwise
        self.batches = batches

    def deliver(self, kind: str, raw_body: str) -> Delivered:
        """Post one row; transport failures are ``UNAVAILABLE``, bad bodies ``REJECTED``."""
        try:
            body = json.loads(raw_body)
            url, payload, headers = self._request(kind, body)
        except (ValueError, KeyError, TypeError) as exc:
            return Delivered(DeliveryOutcome.REJECTED, f"unreadable {kind!r} row: {exc}")
        try:
            reply = self.http.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            return Delivered(DeliveryOutcome.UNAVAILABLE, _unreachable(self.base, exc))
        return outcome(kind, reply.status_code, reply.text)

    def deliver_batch(self, rows: Sequence[Any]) -> list[Delivered]:
        """Post ``rows`` (``Pending``: ``kind``, ``body``) in as few requests as fit.

        Uses the engine's ``POST /v1/outbox/deliveries``; an engine without it (404/405)
        gets each row on its own from then on. Returns one outcome per row tried, in
        order, stopping after the first ``UNAVAILABLE``.
        """
        if not self.batches:
            return self._singly(rows)
        results: list[Delivered] = []
        for chunk in _chunks(rows, BATCH_BYTES):
            payload = {"rows": [{"kind": row.kind, "body": row.body} for row in chunk]}
            headers = {**self._auth, "X-Stepline-Csrf": "1"}
            try:
                reply = self.http.post(f"{self.base}{BATCH_PATH}", json=payload, headers=headers)
            except httpx.HTTPError as exc:
                failed = Delivered(DeliveryOutcome.UNAVAILABLE, _unreachable(self.base, exc))
                return [*results, failed]
            if reply.status_code in (404, 405) and "outbox" not in reply.text:
                self.batches = False  # an engine from before the batch route
                return [*results, *self._singly(rows[len(results) :])]
            if reply.status_code != 200:
                answer = outcome("batch", reply.status_code, reply.text)
                if answer.outcome is DeliveryOutcome.UNAVAILABLE:
                    return [*results, answer]
                # refused as a whole (too large, say): each row gets its own answer
                return [*results, *self._singly(rows[len(results) :])]
            answers = [
                Delivered(DeliveryOutcome(a["outcome"]), a.get("note"))
                for a in reply.json()["data"]
            ]
            results += answers
            if len(answers) < len(chunk):
                break
        return results

    def _singly(self, rows: Sequence[Any]) -> list[Delivered]:
        results = []
        for row in rows:
            results.append(self.deliver(row.kind, row.body))
            if results[-1].outcome is DeliveryOutcome.UNAVAILABLE:
                break
        return results

    def _request(self, kind: str, body: Any) -> tuple[str, Any, dict[str, str]]:
        if kind == "event":
            key = urllib.parse.quote(self.event_key, safe="")
            headers = {SEED_HEADER: str(body["seed"]), "X-Stepline-Csrf": "1"}
            return f"{self.base}/e/{key}", list(body["events"]), headers
        if kind == "start":
            fid = urllib.parse.quote(str(body["function_id"]), safe="")
            payload = {
                "data": body.get("data") or {},
                "run_id": body["run_id"],
                "idempotency_key": body.get("idempotency_key"),
                "started_by": body.get("started_by"),
            }
            url = f"{self.base}/v1/functions/{fid}/runs"
            return url, payload, {**self._auth, "X-Stepline-Csrf": "1"}
        raise ValueError(f"unknown row kind {kind!r}")

    def close(self) -> None:
        """Close the HTTP pool."""
        self.http.close()


def _chunks(rows: Sequence[Any], limit: int) -> list[Sequence[Any]]:
    """``rows`` in consecutive runs whose bodies add up to at most ``limit`` characters."""
    chunks: list[Sequence[Any]] = []
    start, size = 0, 0
    for index, row in enumerate(rows):
        if index > start and size + len(row.body) > limit:
            chunks.append(rows[start:index])
            start, size = index, 0
        size += len(row.body)
    if start < len(rows):
        chunks.append(rows[start:])
    return chunks


def _unreachable(base: str, exc: httpx.HTTPError) -> str:
    """A transport failure's reason, naming the engine (its base URL: no event key)."""
    return f"could not reach the engine at {base}: {type(exc).__name__}: {exc}"
