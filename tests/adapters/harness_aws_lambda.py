"""Contract harness for ``stepline.aws_lambda``: payload 2.0 events, as API Gateway sends.

The harness plays an HTTP API with one route, the serve path, integrated with the Lambda
function: other paths get API Gateway's 404 without reaching the handler. Payload 1.0
(REST API) events are covered in ``test_serverless_adapters.py``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import stepline
import stepline.aws_lambda

from .harness import Reply

DOMAIN = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"


def v2_event(method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for one request."""
    url = urllib.parse.urlsplit(path)
    return {
        "version": "2.0",
        "routeKey": f"ANY {url.path}",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": {k.lower(): v for k, v in headers.items()} | {"host": DOMAIN},
        "requestContext": {
            "domainName": DOMAIN,
            "http": {"method": method, "path": url.path, "protocol": "HTTP/1.1"},
            "stage": "$default",
        },
        "body": body.decode() if body else None,
        "isBase64Encoded": False,
    }


class AwsLambdaHarness:
    framework = "aws_lambda"
    streaming = False

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        self.route = options.get("serve_path") or "/api/inngest"
        self.handler: Callable[[Any, Any], dict[str, Any]] = stepline.aws_lambda.serve(
            client, functions, **options
        )

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if urllib.parse.urlsplit(path).path != self.route:
            return Reply(404, {}, json.dumps({"message": "Not Found"}).encode())
        result = self.handler(v2_event(method, path, headers, body), None)
        reply_headers = {k.lower(): v for k, v in result["headers"].items()}
        return Reply(result["statusCode"], reply_headers, result["body"].encode())
