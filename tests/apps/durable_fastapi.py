"""The shop's durable endpoints on FastAPI (``durable_shop``), for the endpoint tests.

Importable (``build``) and runnable as a process for the crash scenario: ``python -m
tests.apps.durable_fastapi PORT DATABASE MARKERS sync|async`` serves it with uvicorn.
The login is a FastAPI dependency (the session's user in ``request.state.user``, else
401); ``note``'s caller hook reads it there. The run routes are at ``/api``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

import fastapi
import starlette.requests

import stepline.fastapi
from tests.apps.durable_shop import LOGGED_IN, PATHS, Shop, user_from


def user_of(request: starlette.requests.Request) -> str | None:
    return user_from(request.headers.get("authorization"), request.cookies.get("session"))


def logged_in(request: fastapi.Request) -> str:
    """The app's own authentication: a dependency, before the endpoint."""
    user = user_of(request)
    if user is None:
        raise fastapi.HTTPException(401, "log in first")
    request.state.user = user
    return user


@dataclasses.dataclass
class Built:
    shop: Shop
    app: fastapi.FastAPI


def build(database: str, markers: Path, *, is_async: bool, async_hooks: bool = False) -> Built:
    shop = Shop("shop-fastapi", database, markers, is_async=is_async, async_hooks=async_hooks)
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(shop.client))
    views = shop.declare(
        functools.partial(stepline.fastapi.durable, shop.client),
        user_of=user_of,
        caller=shop.caller(lambda request: f"user:{request.state.user}"),
    )
    login = [fastapi.Depends(logged_in)]
    for name, view in views.items():
        app.post(PATHS[name], dependencies=login if name in LOGGED_IN else None)(view)
    stepline.fastapi.serve(app, shop.client, [], engine=shop.engine)
    kit = stepline.fastapi.runs_router(
        shop.client, shop.functions, authorize=Shop.kit_authorize(user_of)
    )
    app.include_router(kit, prefix="/api")
    return Built(shop, app)


if __name__ == "__main__":
    import uvicorn

    port, database, markers, face = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    built = build(database, markers, is_async=face == "async")
    uvicorn.run(built.app, host="127.0.0.1", port=port, log_level="warning")
