"""The onboarding workflow: the durable function a signup starts, and ``sign_up()``.

Each step's result is recorded by the engine: if sending the email fails, only that step
is retried, and a restart of the server resumes the run where it stopped.
"""

from __future__ import annotations

from typing import Any

import pydantic
from django.core.mail import send_mail

import stepline
import stepline.django
from signup import users

client = stepline.django.get_client()


class UserCreated(pydantic.BaseModel):
    user_id: int


@client.function(id="onboarding", trigger=stepline.TriggerEvent(event="signup/user.created"))
def onboarding(ctx: stepline.SyncContext) -> dict[str, Any]:
    user_id = ctx.event.data_as(UserCreated).user_id
    user = ctx.step.run("load-user", lambda: _load(user_id))
    ctx.step.run("send-welcome-email", lambda: _welcome(user))
    ctx.step.run("mark-onboarded", lambda: users.mark_onboarded(user_id))
    return {"user_id": user_id, "email": user["email"], "welcomed": True}


functions = [onboarding]


def sign_up(email: str, name: str) -> tuple[users.User, stepline.SyncRunHandle]:
    """Create the user and start their onboarding run (once per user, whatever happens)."""
    user = users.create(email, name)
    key = f"signup-{user.id}-{user.email}"  # a repeated start returns the same run
    handle = client.start_sync(onboarding, {"user_id": user.id}, idempotency_key=key)
    users.set_run(user.id, handle.run_id)
    return user, handle


def _load(user_id: int) -> dict[str, Any]:
    user = users.get(user_id)
    if user is None:  # deleted meanwhile: retrying will not bring it back
        raise stepline.NonRetriableError(f"user {user_id} does not exist")
    return user.to_json()


def _welcome(user: dict[str, Any]) -> int:
    greeting = f"Hello {user['name'] or user['email']}, welcome aboard!"
    return send_mail("Welcome!", greeting, "hello@example.com", [user["email"]])
