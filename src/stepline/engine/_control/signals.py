"""Signals to a run: a step waits under a key until a signal with that key arrives.

A ``WaitForSignal`` op (the official JS SDK's ``step.waitForSignal``, Stepline's
``ctx.step.wait_for_signal``) records a pause of kind ``signal`` holding its key in
``pauses.signal`` (unique where set) and a timeout job; the step shows as Waiting with
``wait = {"signal": name, "key": key, "until": t}``. The op's ``opts``:

- ``signal``: the key. An official SDK's is the app's own string, global to the engine
  (Inngest's semantics); Stepline's SDK sends the run's token for the name
  (``stepline._protocol.signals``), so two runs never share one.
- ``name`` (Stepline only): the name within the run, which ``POST
  /v1/runs/{id}/signals/{name}`` addresses; an official SDK's key is its name.
- ``timeout`` (default a year) and ``conflict``: what to do when another step already
  waits under the key: ``"replace"`` takes the key over (the other wait stays pending
  until its own timeout), anything else (``"fail"``, the default) fails this step with
  ``SignalConflictError``.
- ``approval`` (Stepline's durable agents): the tool call the wait asks a person to
  decide on, kept on the step's ``wait`` and marked on the pause, so that the engine lists
  it among pending approvals (``engine/_control/approvals.py``).

Delivering a signal deletes the pause in the transaction that completes the step, so a
signal completes a wait once: a second one finds no pause, and is told the wait was
already completed (409) when the run's step shows it, else that nothing waits (404). The
memo is ``{"data": {"signal": name, "data": data}}`` (what the JS SDK returns), a
timeout's ``null``. Every function runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from stepline._protocol import signals as _tokens
from stepline.engine._errors import NotFoundError
from stepline.engine._model import YEAR, Pause, PauseKind, StepRecord, StepStatus, storable
from stepline.engine._runs.starts import execute_job_id, expire
from stepline.engine._runs.view import RunView, deadline
from stepline.engine._store import Tx
from stepline.engine._wire.response import ReportedOp

__all__ = [
    "MAX_KEY",
    "SignalConflict",
    "by_key",
    "by_token",
    "deliver",
    "to_run",
    "token_state",
    "wait",
]

#: Characters a signal key (or name) may have.
MAX_KEY = 256


class SignalConflict(Exception):
    """The wait this signal addresses was already completed (answered 409)."""


class _Transitions(Protocol):
    """What of the run transitions a signal needs (``RunTransitions``; it imports this)."""

    def finish_wait(
        self,
        tx: Tx,
        view: RunView,
        step_id: str,
        memo: Any,
        now: float,
        *,
        status: StepStatus | None = None,
    ) -> None: ...

    def maybe_discover(self, tx: Tx, view: RunView, now: float, *, race: bool) -> str | None: ...


def _valid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY and storable(value)


def wait(transitions: _Transitions, tx: Tx, view: RunView, op: ReportedOp, now: float) -> None:
    """Record a ``WaitForSignal`` op: a pause under its key, and its timeout."""
    rid = view.run.run_id
    key = op.opts.get("signal")
    name = op.opts.get("name") or key
    step = view.step(op, StepStatus.WAITING, now)
    problem = None
    if not _valid(key) or not _valid(name):
        problem = ("InvalidSignalError", f"a signal key is 1-{MAX_KEY} characters, no NUL")
    else:
        held = tx.signals.signal_pause(str(key))
        if held is not None and op.opts.get("conflict") == "replace":
            tx.signals.set_pause_signal(held.pause_id, None)  # it waits on until its timeout
        elif held is not None:
            problem = (
                "SignalConflictError",
                f"another step (run {held.run_id}) already waits for signal {name!r}; "
                'wait with onConflict "replace" to take it over',
            )
    if problem is not None:  # the step fails (the function may catch it), not the run
        error = {"name": problem[0], "message": problem[1]}
        view.done(op, {"error": error}, StepStatus.FAILED, now)
        transitions.maybe_discover(tx, view, now, race=step.mode == "race")
        return
    timeout = deadline([op.opts.get("timeout")], now, default=YEAR)
    step.wait = {"signal": name, "key": key, "until": timeout}
    pause_id = f"{rid}:{op.id}"
    context: dict[str, Any] = {"signal": key, "name": name}
    approval = op.opts.get("approval")
    if isinstance(approval, dict):
        step.wait["approval"] = approval
        context["approval"] = True
    tx.insert_pause(Pause(pause_id, rid, PauseKind.SIGNAL, "", timeout, op.id, context=context))
    tx.signals.set_pause_signal(pause_id, str(key))
    expire(tx, rid, op.id, timeout)


def deliver(transitions: _Transitions, tx: Tx, pause: Pause, data: Any, now: float) -> str:
    """Complete the pause's step with the signal; the run id. Once: the pause goes."""
    view = RunView.load(tx, pause.run_id)
    if view is None or view.run.status.terminal or not tx.delete_pause(pause.pause_id):
        raise SignalConflict("the wait for this signal has ended")
    step_id = str(pause.step_id)
    tx.queue.delete_job(execute_job_id(pause.run_id, step_id, "timeout"))
    name = (pause.context or {}).get("name")
    transitions.finish_wait(tx, view, step_id, {"data": {"signal": name, "data": data}}, now)
    return pause.run_id


def _ended_wait(tx: Tx, run_id: str, field: str, value: str) -> StepRecord | None:
    """The run's ended wait for a signal whose ``wait[field]`` is ``value``, if any."""
    for step in tx.get_steps(run_id):
        wait = step.wait or {}
        if step.status.ended and "signal" in wait and wait.get(field) == value:
            return step
    return None


def to_run(
    transitions: _Transitions, tx: Tx, run_id: str, name: str, data: Any, *, now: float
) -> str:
    """``POST /v1/runs/{run_id}/signals/{name}``: complete the run's wait for ``name``.

    Raises:
        NotFoundError: no such run, or it waits for no signal ``name``.
        SignalConflict: its wait for ``name`` was already completed (or timed out).
    """
    for pause in tx.run_pauses(run_id):
        if pause.kind is PauseKind.SIGNAL and (pause.context or {}).get("name") == name:
            return deliver(transitions, tx, pause, data, now)
    if tx.get_run(run_id) is None:
        raise NotFoundError(f"run {run_id!r} not found")
    if _ended_wait(tx, run_id, "signal", name) is not None:
        raise SignalConflict(
            f"run {run_id} already received signal {name!r} (or its wait timed out); "
            "no step of it waits for that signal now"
        )
    raise NotFoundError(f"run {run_id} is not waiting for signal {name!r}")


def by_key(transitions: _Transitions, tx: Tx, key: str, data: Any, now: float) -> str:
    """``POST /v1/signals``: complete the wait under ``key`` (a token or an SDK's key).

    Raises:
        NotFoundError: nothing waits under ``key``.
        SignalConflict: ``key`` is a run's token whose wait was already completed.
    """
    pause = tx.signals.signal_pause(key)
    if pause is not None:
        return deliver(transitions, tx, pause, data, now)
    run_id = _tokens.run_of(key)
    if run_id is not None and _ended_wait(tx, run_id, "key", key) is not None:
        raise SignalConflict("this signal was already received (or its wait timed out)")
    raise NotFoundError("no run is waiting for this signal")


def token_state(tx: Tx, token: str, *, signing_keys: Sequence[str]) -> str | None:
    """What ``token`` is, read before a hook's body is: only reads.

    Returns:
        ``"waiting"``: a run token the engine issued whose wait is open; ``"received"``:
        one whose wait was completed (or timed out); None: no token the engine issued
        for anything it knows of (forged, or its run is gone).
    """
    run_id = _tokens.run_of(token)
    if run_id is None:
        return None
    pause = tx.signals.signal_pause(token)
    if pause is not None:
        name = str((pause.context or {}).get("name"))
        ok = pause.run_id == run_id and _tokens.verify(token, run_id, name, signing_keys)
        return "waiting" if ok else None
    step = _ended_wait(tx, run_id, "key", token)
    name = str((step.wait or {}).get("signal")) if step is not None else ""
    if step is not None and _tokens.verify(token, run_id, name, signing_keys):
        return "received"
    return None


def by_token(
    transitions: _Transitions,
    tx: Tx,
    token: str,
    data: Any,
    *,
    now: float,
    signing_keys: Sequence[str],
) -> str:
    """``POST /v1/signals/hooks/{token}``: as ``by_key``, for a verified run token only.

    A key that is not the token of its wait's run and name under one of the engine's
    ``signing_keys`` is not found, whatever waits under it.

    Raises:
        NotFoundError: not a token the engine issued, or nothing waits under it.
        SignalConflict: its wait was already completed.
    """
    run_id = _tokens.run_of(token)
    if run_id is not None:
        pause = tx.signals.signal_pause(token)
        if pause is not None and pause.run_id == run_id:
            name = str((pause.context or {}).get("name"))
            if _tokens.verify(token, run_id, name, signing_keys):
                return deliver(transitions, tx, pause, data, now)
        elif pause is None:
            step = _ended_wait(tx, run_id, "key", token)
            name = str((step.wait or {}).get("signal")) if step is not None else ""
            if step is not None and _tokens.verify(token, run_id, name, signing_keys):
                raise SignalConflict("this signal was already received (or its wait timed out)")
    raise NotFoundError("no run is waiting for this signal")
