"""A tiny app per framework for ``test_sec_bodies``: the serve endpoint and the run kit.

``python tests/apps/framework_minimal.py <framework> <port>`` serves ``/api/inngest`` (and,
where the framework has the kit, ``/api/runs``) on 127.0.0.1 until killed. No engine is
needed: the requests sent are refused before anything reaches one. ``BODIES_ENGINE_URL`` is
the engine a dev-mode app registers itself with in the background (the tests give an address
that refuses connections).
"""

from __future__ import annotations

import asyncio
import os
import sys

import stepline
import stepline.web

client = stepline.Client(
    "bodies", is_production=False, api_base_url=os.environ["BODIES_ENGINE_URL"], environ={}
)


@client.function(id="echo", trigger=stepline.TriggerEvent(event="bodies/echo"))
def echo(ctx: stepline.SyncContext) -> object:
    return ctx.event.data


def main(framework: str, port: int) -> None:
    if framework in ("fastapi", "asgi"):
        import fastapi
        import uvicorn

        import stepline.asgi
        import stepline.fastapi

        if framework == "fastapi":
            app: object = fastapi.FastAPI()
            stepline.fastapi.serve(app, client, [echo])  # type: ignore[arg-type]
            router = stepline.fastapi.runs_router(client, [echo], authorize=stepline.web.allow_all)
            app.include_router(router, prefix="/api")  # type: ignore[attr-defined]
        else:
            app = stepline.asgi.serve(client, [echo])
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
    elif framework == "flask":
        import flask

        import stepline.flask

        flask_app = flask.Flask(__name__)
        stepline.flask.serve(flask_app, client, [echo])
        blueprint = stepline.flask.runs_blueprint(client, [echo], authorize=stepline.web.allow_all)
        flask_app.register_blueprint(blueprint, url_prefix="/api")
        flask_app.run(host="127.0.0.1", port=port, threaded=True)
    elif framework == "aiohttp":
        from aiohttp import web

        import stepline.aiohttp

        aio_app = web.Application()
        stepline.aiohttp.serve(aio_app, client, [echo])
        # its graceful stop waits for the connection of an upload it refused, which the test
        # leaves open: a second, not aiohttp's minute, before it closes it
        web.run_app(aio_app, host="127.0.0.1", port=port, print=None, shutdown_timeout=1.0)
    elif framework == "tornado":
        import tornado.web

        import stepline.tornado

        async def serve_tornado() -> None:
            tornado_app = tornado.web.Application()
            stepline.tornado.serve(tornado_app, client, [echo])
            kit = stepline.tornado.runs_handlers(
                client, [echo], authorize=stepline.web.allow_all, prefix="/api"
            )
            tornado_app.add_handlers(r".*", kit)
            tornado_app.listen(port, address="127.0.0.1")
            await asyncio.Event().wait()

        asyncio.run(serve_tornado())
    else:
        raise SystemExit(f"unknown framework {framework}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
