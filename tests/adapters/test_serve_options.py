"""Every adapter's ``serve`` takes the same options, declared once (``ServeOptions``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import aiohttp.web
import pytest
import starlette.applications

import stepline
import stepline.aiohttp
import stepline.asgi
import stepline.aws_lambda
import stepline.digital_ocean
import stepline.starlette
from stepline._serving import options as _serve_options


def make() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("options", is_production=False, environ={})

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="o/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return client, [noop]


SERVES: dict[str, Callable[..., Any]] = {
    "aiohttp": lambda c, f, **o: stepline.aiohttp.serve(aiohttp.web.Application(), c, f, **o),
    "asgi": stepline.asgi.serve,
    "aws_lambda": stepline.aws_lambda.serve,
    "digital_ocean": stepline.digital_ocean.serve,
    "starlette": lambda c, f, **o: stepline.starlette.serve(
        starlette.applications.Starlette(), c, f, **o
    ),
}


@pytest.mark.parametrize("name", sorted(SERVES))
def test_a_misspelt_option_is_a_type_error(name: str) -> None:
    client, functions = make()
    with pytest.raises(TypeError, match="unexpected keyword argument 'serve_paht'"):
        SERVES[name](client, functions, serve_paht="/x")


@pytest.mark.parametrize("name", sorted(SERVES))
def test_the_options_reach_the_handler(name: str) -> None:
    client, functions = make()
    with pytest.raises(stepline.ConfigError, match="serve_path must start with"):
        SERVES[name](client, functions, serve_path="hooks")
    with pytest.raises(stepline.ConfigError, match="streaming must be"):
        SERVES[name](client, functions, streaming="sometimes")
    with pytest.raises(stepline.ConfigError, match="thread_pool_max_workers"):
        SERVES[name](client, functions, thread_pool_max_workers=-1)
    assert stepline.asgi.serve(client, functions, serve_path="/x").handler.route_path == "/x"


def test_the_options_are_one_typed_declaration() -> None:
    assert set(_serve_options.ServeOptions.__annotations__) == {
        "serve_origin",
        "serve_path",
        "streaming",
        "thread_pool_max_workers",
    }
    for serve in (stepline.asgi.serve, stepline.aws_lambda.serve, stepline.aiohttp.serve):
        options = inspect.signature(serve).parameters["options"]
        assert options.kind is inspect.Parameter.VAR_KEYWORD
