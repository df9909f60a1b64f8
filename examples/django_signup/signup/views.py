"""Sign up (creates the user, starts onboarding), and see how your signup is doing."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import stepline.django
import stepline.web
from signup import users, workflows

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign up</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto">
<h1>Sign up</h1>
<form id="f"><input name="email" type="email" placeholder="you@example.com" required>
<input name="name" placeholder="Your name"> <button>Sign up</button></form>
<pre id="log"></pre>
<p><a href="/stepline/">The engine's dashboard</a></p>
<script>
const log = (line) => (document.getElementById("log").textContent += line + "\\n");
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const form = Object.fromEntries(new FormData(e.target));
  const r = await fetch("/signup", {method: "POST", body: JSON.stringify(form),
                                    headers: {"content-type": "application/json"}});
  const body = await r.json();
  if (!r.ok) return log("error: " + body.error);
  log("user " + body.user_id + ", onboarding run " + body.run_id);
  const events = new EventSource(body.events);
  events.addEventListener("step", (m) => {
    const step = JSON.parse(m.data);
    log(step.name + ": " + step.status);
  });
  events.addEventListener("result", (m) => {
    log("run " + JSON.parse(m.data).status);
    events.close();
  });
};
</script></body></html>
"""


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


@csrf_exempt  # JSON only, and a cross-site form cannot send application/json
@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    if request.content_type != "application/json":
        return JsonResponse({"error": 'send JSON: {"email": ..., "name": ...}'}, status=415)
    try:
        body = json.loads(request.body)
        email, name = str(body["email"]).strip(), str(body.get("name", "")).strip()
        validate_email(email)
    except (ValueError, KeyError, TypeError, ValidationError):
        return JsonResponse({"error": "want a valid email"}, status=400)
    try:
        user, handle = workflows.sign_up(email, name)
    except users.EmailTaken:
        return JsonResponse({"error": f"{email} has already signed up"}, status=409)
    # the session remembers whose runs these are: see `owns_run`
    request.session["runs"] = [*request.session.get("runs", []), handle.run_id][-20:]
    request.session["users"] = [*request.session.get("users", []), user.id][-20:]
    links = {
        "status": reverse("signup-status", args=[user.id]),
        "events": reverse("stepline-run-events", args=[handle.run_id]),
        "result": reverse("stepline-run-result", args=[handle.run_id]),
    }
    return JsonResponse({"user_id": user.id, "run_id": handle.run_id, **links}, status=201)


@require_GET
def status(request: HttpRequest, user_id: int) -> JsonResponse:
    user = users.get(user_id)
    if user is None or user_id not in request.session.get("users", []):
        return JsonResponse({"error": "no such signup in this session"}, status=404)
    client = stepline.django.get_client()
    run = client.get_run_sync(user.run_id).describe() if user.run_id else None
    return JsonResponse({"user": user.to_json(), "run": run.to_json() if run else None})


def owns_run(access: stepline.web.AccessRequest) -> bool:
    """The run routes' ``authorize``: your own signups' runs; starting goes through /signup."""
    if access.action == "start":
        raise stepline.web.AccessDenied("sign up at POST /signup", status=403)
    return access.run_id in access.request.session.get("runs", [])
