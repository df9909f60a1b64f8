"""Contract harness for ``stepline.flask`` over Flask's test client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flask

import stepline
import stepline.flask

from .harness import Reply


class FlaskHarness:
    framework = "flask"
    streaming = False

    def __init__(self) -> None:
        self.app = flask.Flask("contract")

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        stepline.flask.serve(self.app, client, functions, **options)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        response = self.app.test_client().open(path, method=method, headers=headers, data=body)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )
