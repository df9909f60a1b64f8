"""What every adapter's test harness provides to the contract suite."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Protocol

import stepline


@dataclasses.dataclass(frozen=True)
class Reply:
    """A response as seen by the engine: status, lower-cased headers, raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Harness(Protocol):
    """Serves functions through one framework and sends requests through its test client."""

    framework: str  # the X-Inngest-Framework value the adapter reports
    streaming: bool  # whether the adapter supports streaming responses

    def serve(
        self,
        client: stepline.Client,
        functions: Sequence[stepline.Function],
        **options: Any,
    ) -> None:
        """Build the app with ``stepline.<framework>.serve(...)`` and the given options."""

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Send one request (``path`` includes the query string) and return the reply."""


def make_functions(client: stepline.Client) -> list[stepline.Function]:
    """A sync and an async function (ids ``sync``, ``async``) doubling ``event.data.n``."""

    @client.function(id="sync", trigger=stepline.TriggerEvent(event="t/sync"))
    def sync_fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        n = ctx.step.run("double", lambda: ctx.event.data["n"] * 2)
        return {"n": n, "kind": "sync"}

    @client.function(id="async", trigger=stepline.TriggerEvent(event="t/async"))
    async def async_fn(ctx: stepline.Context) -> dict[str, Any]:
        async def double() -> int:
            return int(ctx.event.data["n"]) * 2

        n = await ctx.step.run("double", double)
        return {"n": n, "kind": "async"}

    return [sync_fn, async_fn]
