"""What only Tornado's durable handlers do: ``stepline.tornado.durable``.

What every framework does (through ``AsyncHTTPTestCase`` and behind a real
``HTTPServer``) is in ``test_endpoint_contract.py``; the app is
``tests/apps/durable_tornado.py``. Here: positional groups and the handler's methods
(405 with ``Allow``, the body read first), an app's XSRF check, and the handler class
the decorator makes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tornado.web

import stepline
import stepline.tornado

from .harness import open_site

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("variant", ["tornado-testing", "tornado-server"])
def test_an_endpoint_response_sets_status_and_headers_and_positional_groups(
    variant: str, tmp_path: Path
) -> None:
    with open_site(variant, tmp_path) as site:
        got = site.request("GET", "/seen/acme/7?color=red")
        assert got.status == 201, got.body
        assert got.headers["x-made"] == "yes"
        assert got.json == {
            "method": "GET",
            "path": "/seen/acme/7",
            "query": {"color": "red"},
            "params": {"0": "acme", "1": "7"},  # positional groups, by index
        }
        posted = site.post("/seen/a%20b/8")
        assert posted.status == 201, posted.body
        assert posted.json["params"] == {"0": "a b", "1": "8"}  # decoded as Tornado does
        assert posted.headers["x-stepline-run-id"] != got.headers["x-stepline-run-id"]
        # methods not listed: 405 once the body is read (the connection stays usable), no run
        put = site.request("PUT", "/seen/a/b", b"{}", JSON)
        assert (put.status, put.headers["allow"]) == (405, "GET, POST"), put.body
        assert put.json == {"error": "method PUT not allowed"}
        assert site.request("GET", "/orders/1").headers["allow"] == "POST"
        assert site.request("DELETE", "/orders/1").status == 405
        assert site.shop.marks() == []
        assert site.runs("orders") == []
        seen, _ = site.client.list_runs_sync(function=site.shop.function("seen"))
        assert len(seen) == 2


def test_an_xsrf_protected_app_checks_the_token(tmp_path: Path) -> None:
    with open_site("tornado-testing", tmp_path, xsrf=True) as site:
        refused = site.post("/orders/1", b"{}", JSON)
        assert refused.status == 403, refused.body
        assert refused.json == {"error": "the XSRF check failed"}
        assert site.runs("orders") == []
        token = {"Cookie": "_xsrf=tok", "X-XSRFToken": "tok", **JSON}
        assert site.post("/orders/1", b"{}", token).status == 200


def test_the_decorator_makes_a_request_handler_with_the_endpoint() -> None:
    client = stepline.Client("tornado-durable", is_production=False, environ={})

    @stepline.tornado.durable(client, retries=2)
    def pay_order(ctx: stepline.SyncEndpointContext) -> str:
        """Pay."""
        return "paid"

    assert issubclass(pay_order, tornado.web.RequestHandler)
    assert pay_order.__name__ == "pay_order"
    assert pay_order.__doc__ == "Pay."
    assert pay_order.allowed == ("POST",)
    assert pay_order.endpoint.function.id == "pay-order"
    with pytest.raises(stepline.ConfigError, match="methods must be some of"):
        stepline.tornado.durable(client, methods=("FETCH",))
    with pytest.raises(stepline.ConfigError, match="methods must be some of"):
        stepline.tornado.durable(client, methods=())
