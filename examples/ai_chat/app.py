"""A chat page whose answers come from a durable AI agent, streamed live to the browser.

One command runs the page, the engine (in this process, on SQLite) and the workers:

    python examples/ai_chat/app.py          # then open http://127.0.0.1:8000

Each message the page sends starts a ``chat`` run through the web kit's ``POST
/api/runs``. The run is a Pydantic AI agent wrapped in ``stepline.ai.DurableAgent``: each
model request and each tool call is a step, and the model's text goes onto the run's
stream (topic ``ai``) as it is written. The page follows the stream on the kit's
Server-Sent Events route and folds it into the answer (an attempt interrupted by a crash
is marked discarded and dropped, so no text shows twice); the browser reconnects with
``Last-Event-ID`` and misses nothing. A refund needs a person: the run waits durably for
a decision, which the page answers through the kit's approvals routes.

Offline by default: a Pydantic AI ``FunctionModel`` streams canned answers word by word.
``CHAT_MODEL=openai:gpt-5`` (any model name Pydantic AI knows, its provider's package
and key installed) puts a real model in its place.

Each browser gets a ``chatter`` cookie; the kit's ``authorize`` turns it into the run's
principal, so a browser sees and answers only its own runs and approvals.
Settings: ``PORT`` (8000), ``STEPLINE_DATABASE_URL`` (``.stepline/embedded.db``),
``CHAT_MODEL`` (unset: the canned model), ``CHAT_TOKEN_DELAY`` (seconds between the canned
model's words, 0.05), ``CHAT_MODEL_LOG`` (a file the canned model appends a line to for
each request it makes and each it completes).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import fastapi
import fastapi.responses
import pydantic
import uvicorn
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

import stepline
import stepline.fastapi
import stepline.web
from stepline.ai import DurableAgent
from stepline.embedded import EmbeddedEngine

client = stepline.Client("ai-chat", is_production=False)
PAGE = Path(__file__).with_name("index.html")
COOKIE = "chatter"
TOKEN_DELAY = float(os.environ.get("CHAT_TOKEN_DELAY", "0.05"))
MODEL_LOG = os.environ.get("CHAT_MODEL_LOG", "")
ORDERS = {"7": "shipped on Monday", "8": "waiting for the last item", "9": "delivered"}


def log_model(*words: object) -> None:
    """One line per model request begun and completed, when ``CHAT_MODEL_LOG`` names a file."""
    if MODEL_LOG:
        with open(MODEL_LOG, "a", encoding="utf-8") as out:
            out.write(" ".join(map(str, (*words, os.getpid()))) + "\n")


def canned_reply(messages: list[ModelMessage]) -> tuple[str, DeltaToolCall | None]:
    """What the canned model says to the last message, and the tool it calls if any."""
    last = messages[-1]
    parts = last.parts if isinstance(last, ModelRequest) else []
    for part in parts:
        if isinstance(part, ToolReturnPart) and part.tool_name == "order_status":
            order = re.sub(r"\D", "", str(part.content)) or "?"
            return (
                f"Order {part.content}: our warehouse packed it with care, the carrier has "
                "it now and expects to deliver it within two working days. You will get a "
                "tracking link by email as soon as it leaves the sorting centre; reply here "
                f"if order {order} has not arrived by then and I will look into it again."
            ), None
        if isinstance(part, ToolReturnPart) and part.tool_name == "refund":
            # approved: what the tool returned; rejected: the person's reason
            return f"The refund tool answered: {part.content}. Anything else?", None
    prompt = " ".join(
        str(part.content) for part in parts if isinstance(part, UserPromptPart)
    ).lower()
    order = (re.findall(r"\d+", prompt) or ["7"])[0]
    if "refund" in prompt:
        call = DeltaToolCall(
            name="refund", json_args=f'{{"order_id": "{order}", "cents": 1500}}', tool_call_id="r1"
        )
        return f"I can refund 15.00 on order {order}; a person has to approve it first.", call
    if "order" in prompt:
        call = DeltaToolCall(
            name="order_status", json_args=f'{{"order_id": "{order}"}}', tool_call_id="s1"
        )
        return f"Let me look up order {order} for you.", call
    return "Ask me where an order is (say, order 7), or for a refund on one.", None


async def canned_stream(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    """The offline model: streams its reply a word at a time, then the tool call if any."""
    text, call = canned_reply(messages)
    request = sum(isinstance(m, ModelResponse) for m in messages) + 1
    log_model("model-request", request)
    for word in re.findall(r"\S+\s*", text):
        await asyncio.sleep(TOKEN_DELAY)
        yield word
    if call is not None:
        yield {0: call}
    log_model("model-done", request)


def model() -> Model | str:
    """``CHAT_MODEL`` if set (e.g. ``openai:gpt-5``), else the offline canned model."""
    return os.environ.get("CHAT_MODEL") or FunctionModel(stream_function=canned_stream)


agent = Agent(
    model(),
    name="support",
    instructions="You help customers with their orders. Answer in one short paragraph.",
)


@agent.tool_plain
def order_status(order_id: str) -> str:
    """The status of an order."""
    return f"{order_id} {ORDERS.get(order_id, 'is not one of ours')}"  # your database here


@agent.tool_plain(requires_approval=True)
def refund(order_id: str, cents: int) -> str:
    """Refund an order, in cents."""
    return f"refunded {cents / 100:.2f} on order {order_id}"  # your payments API here


support = DurableAgent(agent, approval_timeout="1d")


class Message(pydantic.BaseModel):
    prompt: str = pydantic.Field(min_length=1, max_length=2000)
    conversation: str = pydantic.Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


@client.function(id="chat", trigger=stepline.TriggerEvent(event="chat/said"), retries=3)
async def chat(ctx: stepline.Context) -> str:
    """One message of a conversation: the agent answers it, with the ones before it."""
    said = Message.model_validate(ctx.event.data)
    result = await support.on(ctx).run(said.prompt, conversation_id=said.conversation)
    return result.output


def chatter(access: stepline.web.AccessRequest) -> stepline.web.Principal:
    """The kit's authorize hook: the browser's cookie is the principal owning its runs."""
    cookie = access.request.cookies.get(COOKIE)
    if not cookie:
        raise stepline.web.AccessDenied("open the page first (it sets the cookie)", status=401)
    return stepline.web.Principal(f"chatter:{cookie}")


app = fastapi.FastAPI(title="Durable chat", lifespan=stepline.fastapi.lifespan(client))
# A run whose process died is taken up again once its lease lapses: 5 s, so that a
# restarted app finishes an interrupted answer within seconds (the engine's default is 30).
engine = EmbeddedEngine(client, [chat], lease_seconds=5, poll_interval=0.2)
stepline.fastapi.serve(app, client, [chat], engine=engine)
app.include_router(
    stepline.fastapi.runs_router(
        client, [chat], authorize=chatter, inputs={chat: Message}, poll_interval=0.1
    ),
    prefix="/api",  # POST /api/runs, GET /api/runs/{id}/events, /api/approvals...
)


@app.get("/", response_class=fastapi.responses.HTMLResponse)
async def page(request: fastapi.Request) -> fastapi.responses.HTMLResponse:
    """The page; it gives a new browser its ``chatter`` cookie."""
    response = fastapi.responses.HTMLResponse(PAGE.read_text(encoding="utf-8"))
    if not request.cookies.get(COOKIE):
        response.set_cookie(COOKIE, secrets.token_urlsafe(16), httponly=True, samesite="strict")
    return response


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
