"""Sending a signal to a run from its admin page (``stepline.signal_run``).

The form checks the name and the JSON data before anything reaches the engine; ``send``
is the run handle's own ``signal`` (``client.get_run_sync(run_id)``), so an embedded
engine and a separate one answer alike: a run that waits for no such signal is a
``SignalNotWaitingError``, a wait that already ended a ``SignalAlreadyReceivedError``
(both ``ManagementError``).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from stepline._client import Client
from stepline.django._admin.base import Done

__all__ = ["NAME_LENGTH", "PERMISSION", "SignalForm", "parse_data", "send"]

#: the codename that allows it (app label ``stepline``)
PERMISSION = "signal_run"
#: the longest signal name ``step.wait_for_signal`` takes
NAME_LENGTH = 128


def parse_data(text: str) -> Any:
    """The data field's JSON value; empty sends ``null``.

    Raises:
        ValueError: ``text`` is not JSON, with where it stops being JSON.
    """
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ValueError(f"Not valid JSON: {exc.msg} ({where}). Nothing was sent.") from None


class SignalForm(forms.Form):
    """A signal's name and its data (any JSON value, or empty for ``null``)."""

    signal = forms.CharField(
        label="Signal",
        max_length=NAME_LENGTH,
        help_text="The name the run's step.wait_for_signal waits for.",
    )
    # not ``data``: a form's ``data`` is what it was bound to
    payload = forms.CharField(
        label="Data (JSON)",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Any JSON value; the step returns it. Empty sends null, which the step "
        "cannot tell from a timeout.",
    )

    def clean_payload(self) -> Any:
        try:
            return parse_data(self.cleaned_data.get("payload") or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


def send(client: Client, run_id: str, form: SignalForm) -> Done:
    """Send a valid form's signal to ``run_id`` through ``client``.

    Raises:
        ManagementError: the engine refused it (nothing waits for it, the wait already
            ended) or could not be reached.
    """
    name = str(form.cleaned_data["signal"])
    client.get_run_sync(run_id).signal(name, form.cleaned_data["payload"])
    return Done(f"Sent signal {name} to run {run_id}")
