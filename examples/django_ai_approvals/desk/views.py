"""The customer's side: ask for a refund (a Django form, with its CSRF token), follow it."""

from __future__ import annotations

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

import stepline
from desk import workflows


class AskForm(forms.Form):
    message = forms.CharField(
        max_length=2000,
        initial="Please refund order 7: the teapot arrived broken.",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


def index(request: HttpRequest) -> HttpResponse:
    form = AskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        handle = workflows.client.start_sync(
            workflows.refund_request, {"message": form.cleaned_data["message"]}
        )
        # the session remembers whose runs these are: see `run`
        request.session["runs"] = [*request.session.get("runs", []), handle.run_id][-20:]
        return HttpResponseRedirect(reverse("desk-run", args=[handle.run_id]))
    runs = [_shown(run_id) for run_id in reversed(request.session.get("runs", []))]
    return render(request, "desk/index.html", {"form": form, "runs": runs})


def run(request: HttpRequest, run_id: str) -> HttpResponse:
    if run_id not in request.session.get("runs", []):
        raise Http404("not one of your requests")
    return render(request, "desk/run.html", {"run": _shown(run_id)})


def _shown(run_id: str) -> dict[str, object]:
    """A run as the pages show it: its status, its answer, whether it waits for a person."""
    handle = workflows.client.get_run_sync(run_id)
    info = handle.describe()
    waiting = info.status is stepline.RunStatus.RUNNING and any(
        step.status == "Waiting" and ":approval:" in step.name for step in handle.steps()
    )
    return {
        "id": run_id,
        "status": "Waiting for approval" if waiting else info.status.value,
        "ended": info.status.terminal,
        "output": info.output if info.status is stepline.RunStatus.COMPLETED else None,
        "error": (info.error or {}).get("message"),
    }
