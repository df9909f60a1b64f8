"""A report that streams its progress to the browser: Stepline's durable streams, live.

One command runs the web page, the engine (in this process, on SQLite) and the workers:

    python examples/streams/app.py          # then open http://127.0.0.1:8000

The button starts a ``build-report`` run. For each of its files the run publishes a
durable progress message (``ctx.step.publish``: stored exactly once, even when the run is
replayed or retried) and the file's summary word by word (``ctx.publish``: light, for
token-like data). The page follows the run on the web kit's Server-Sent Events route with
a plain ``EventSource``; when the connection drops the browser reconnects with
``Last-Event-ID`` and the route resumes after the last message it got: nothing is lost,
nothing comes twice.

Each browser gets a ``reporter`` cookie; the kit's ``authorize`` turns it into the run's
principal, so a run's stream is shown to the browser that started it and to nobody else.
Settings: ``PORT`` (8000), ``STEPLINE_DATABASE_URL`` (``.stepline/embedded.db``).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

import fastapi
import fastapi.responses
import pydantic
import uvicorn

import stepline
import stepline.fastapi
import stepline.web

client = stepline.Client("reports", is_production=False)
PAGE = Path(__file__).with_name("index.html")
COOKIE = "reporter"
SUMMARY = (
    "revenue grew in every region while costs held steady and the new stores opened on time "
    "with customers asking for more of the same"
)
WORDS = SUMMARY.split(" ")


class ReportRequest(pydantic.BaseModel):
    files: int = pydantic.Field(default=10, ge=1, le=50)
    pause: float = pydantic.Field(default=0.5, ge=0, le=10, description="seconds between files")


def summarize(number: int) -> dict[str, Any]:
    """Stands for the real work on one file (parsing, an LLM call...)."""
    words = [WORDS[(number * 3 + k) % len(WORDS)] for k in range(4 + number % 3)]
    return {"file": f"file-{number:02d}.csv", "summary": " ".join(words)}


@client.function(id="build-report", trigger=stepline.TriggerEvent(event="reports/requested"))
async def build_report(ctx: stepline.Context) -> dict[str, Any]:
    """Process the files one by one, streaming progress and each file's summary."""
    request = ReportRequest.model_validate(ctx.event.data)
    tokens = 0
    for number in range(1, request.files + 1):
        part = await ctx.step.run(f"process-{number}", lambda n=number: summarize(n))
        for word in part["summary"].split():  # token-like: light, not memoized
            ctx.publish("tokens", {"file": number, "token": word})
            tokens += 1
        label = f"{number} of {request.files}"
        progress = {"done": number, "total": request.files, "label": label, "partial": part}
        await ctx.step.publish(f"progress-{number}", topic="progress", data=progress)
        if request.pause and number < request.files:
            await ctx.step.sleep(f"pause-{number}", dt.timedelta(seconds=request.pause))
    return {"files": request.files, "tokens": tokens, "messages": request.files + tokens}


def reporter(access: stepline.web.AccessRequest) -> stepline.web.Principal:
    """The kit's authorize hook: the browser's cookie is the principal owning its runs."""
    cookie = access.request.cookies.get(COOKIE)
    if not cookie:
        raise stepline.web.AccessDenied("open the page first (it sets the cookie)", status=401)
    return stepline.web.Principal(f"reporter:{cookie}")


app = fastapi.FastAPI(title="Streaming report", lifespan=stepline.fastapi.lifespan(client))
stepline.fastapi.serve(app, client, [build_report], engine="embedded")
app.include_router(
    stepline.fastapi.runs_router(
        client,
        [build_report],
        authorize=reporter,
        inputs={build_report: ReportRequest},
        poll_interval=0.2,
    ),
    prefix="/api",
)


@app.get("/", response_class=fastapi.responses.HTMLResponse)
async def page(request: fastapi.Request) -> fastapi.responses.HTMLResponse:
    """The page; it gives a new browser its ``reporter`` cookie."""
    response = fastapi.responses.HTMLResponse(PAGE.read_text(encoding="utf-8"))
    if not request.cookies.get(COOKIE):
        response.set_cookie(COOKIE, secrets.token_urlsafe(16), httponly=True, samesite="strict")
    return response


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
