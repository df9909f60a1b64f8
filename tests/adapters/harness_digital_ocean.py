"""Contract harness for ``stepline.digital_ocean``: the platform's part, emulated.

The harness plays DigitalOcean: it turns each request into a ``web: raw`` event plus a
function context and calls ``main``. It deploys the function behind a route at the serve
path (as an App Platform route or proxy would), so requests to any other path get the
platform's 404. A function context only knows the function's own URL
(``/api/v1/web/<namespace>/<package>/<name>``), so behind such a route the app passes
``serve_path``, which the harness does by default.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import stepline
import stepline.digital_ocean

from .harness import Reply

ROUTE = "/api/inngest"


@dataclasses.dataclass(frozen=True)
class FakeContext:
    """The attributes of DigitalOcean's context object that the adapter reads."""

    api_host: str = "https://faas-nyc1-2ef2e6cc.doserverless.co"
    function_name: str = "/fn-7f5c1d2e/stepline/contract"


def raw_event(method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """A ``web: raw`` event: the query stays a string, the body is text."""
    url = urllib.parse.urlsplit(path)
    return {
        "http": {
            "method": method,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body.decode(),
            "queryString": url.query,
            "path": "",
            "isBase64Encoded": False,
        }
    }


class DigitalOceanHarness:
    framework = "digitalocean"
    streaming = False

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        self.route = options.setdefault("serve_path", ROUTE)
        self.main: Callable[[Any, Any], dict[str, Any]] = stepline.digital_ocean.serve(
            client, functions, **options
        )

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if urllib.parse.urlsplit(path).path != self.route:
            return Reply(404, {}, json.dumps({"error": "not found"}).encode())
        result = self.main(raw_event(method, path, headers, body), FakeContext())
        reply_headers = {k.lower(): v for k, v in result["headers"].items()}
        return Reply(result["statusCode"], reply_headers, result["body"].encode())
