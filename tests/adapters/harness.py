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
