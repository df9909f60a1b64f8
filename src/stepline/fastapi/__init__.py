"""Stepline in a FastAPI app: serve functions, run the engine in-process, expose run routes.

The framework reported is ``fast_api``, as inngest-py reports it.

Example:
    >>> app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))
    >>> stepline.fastapi.serve(app, client, [process_order], engine="embedded")
    >>> app.include_router(
    ...     stepline.fastapi.runs_router(client, [process_order], authorize=check), prefix="/api"
    ... )
"""

from __future__ import annotations

from stepline.fastapi._durable import durable as durable
from stepline.fastapi._lifespan import ClientDep as ClientDep
from stepline.fastapi._lifespan import get_client as get_client
from stepline.fastapi._lifespan import lifespan as lifespan
from stepline.fastapi._runs import runs_router as runs_router
from stepline.fastapi._serve import ENGINE_PATH as ENGINE_PATH
from stepline.fastapi._serve import FRAMEWORK as FRAMEWORK
from stepline.fastapi._serve import serve as serve

__all__ = [
    "ENGINE_PATH",
    "ClientDep",
    "durable",
    "get_client",
    "lifespan",
    "runs_router",
    "serve",
]
