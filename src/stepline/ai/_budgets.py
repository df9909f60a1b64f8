"""A budget's check before a model request: a period budget's (``TokenBudget(period=)``),
kept by the engine, and a run's.

The engine keeps the count (``engine._runs.tokens``): a model-request step carries its
budget in its op (``charge``), and the transaction that records it adds its tokens. Before
a request that has not run yet, the agent reads the count for the run's key
(``GET /v1/token-budgets/{name}``); over budget it fails the run, or sleeps until the
window ends (a durable sleep step, ``<request>:budget``, then ``:budget:1``...) and reads
again.

With ``on_exceeded="approve"``, over budget the run waits for a person instead: the
step ``<request>:budget-approval`` waits for a signal, as a tool call's approval does
(``_approvals.ask``), with the budget, the key, the period and the tokens used recorded
on the wait, so that the engine lists it among pending approvals. Approved, this one
request is made (the next one is checked again); rejected, the run fails with
``TokenBudgetExceededError`` carrying the reason.

Replays make the same steps: the sleeps recorded for a request are replayed first, in
order, a recorded decision is taken as it was (never asked again), and a request already
recorded is not checked again (its count now includes its own tokens), so the history a
replay walks never changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stepline._api import tokens as _api_tokens
from stepline._execution.context import Context, call_state
from stepline._execution.publish import publisher_of
from stepline.ai import _approvals
from stepline.ai._run import AgentRun
from stepline.ai._usage import TokenBudget, TokenBudgetExceededError

__all__ = ["before_request", "before_run_request"]


async def before_request(run: AgentRun, budget: TokenBudget, step_id: str) -> dict[str, Any]:
    """Check ``budget`` for the model request ``step_id``; the budget entry its step's op
    carries, for the engine to charge.

    Raises:
        TokenBudgetExceededError: the count is spent and the budget fails the run, or a
            person did not let the request go over it.
    """
    ctx = run.ctx
    state = call_state(ctx)
    name = budget.name or run.options.name
    key = budget.key_for(ctx.event.to_wire())
    period = budget.period.total_seconds() if budget.period is not None else 0.0
    wait_id = f"{step_id}:budget"
    while True:
        if state.is_recorded(wait_id):  # slept before, in an earlier call: replay it
            await _sleep_until(run, wait_id, dt.datetime.now(dt.timezone.utc))
            continue
        if state.is_recorded(step_id):
            break  # made already: not checked again
        if state.is_recorded(approval_step_id(step_id)):  # decided: never asked again
            _go_ahead(run, budget, step_id, name=name, key=key, used=0, window_end=None)
            break
        connection = publisher_of(state).connection
        flow = _api_tokens.budget_flow(connection.settings, name, key, period)
        if isinstance(ctx, Context):
            usage = await connection.run_async(flow)
        else:
            usage = connection.run_sync(flow)
        if usage.used < budget.tokens:
            break
        if budget.on_exceeded == "fail":
            raise budget.exceeded(name, key, usage.used, step_id=step_id)
        if budget.on_exceeded == "approve":
            end = usage.window_end
            _go_ahead(run, budget, step_id, name=name, key=key, used=usage.used, window_end=end)
            break
        until = dt.datetime.fromtimestamp(usage.window_end, dt.timezone.utc)
        await _sleep_until(run, wait_id, until)  # the call ends here: the engine sleeps
    return {"name": name, "key": key, "period": period}


async def before_run_request(run: AgentRun, budget: TokenBudget, step_id: str, used: int) -> None:
    """Check the run's ``budget`` for the model request ``step_id``, its earlier requests
    having used ``used`` tokens (the same on every replay).

    Raises:
        TokenBudgetExceededError: the budget is spent and fails the run, or a person
            rejected going over it.
    """
    if used < budget.tokens:
        return
    if budget.on_exceeded != "approve":
        budget.check(used, step_id=step_id)
    _go_ahead(run, budget, step_id, name=None, key=None, used=used, window_end=None)


def approval_step_id(step_id: str) -> str:
    """The step that waits for a person to let the request ``step_id`` go over budget."""
    return f"{step_id}:budget-approval"


def _go_ahead(
    run: AgentRun,
    budget: TokenBudget,
    step_id: str,
    *,
    name: str | None,
    key: str | None,
    used: int,
    window_end: float | None,
) -> None:
    """Ask a person to let ``step_id`` go over ``budget`` (or take the decision recorded);
    return once approved.

    The wait records what a person needs to decide (the budget, its key and period, the
    tokens used, the request held) and the engine keeps it in the decision, so that a
    replay (which reads no count) fails with the same figures.

    Raises:
        TokenBudgetExceededError: rejected, or no decision came in time (``"reject"``).
        ApprovalTimeoutError: no decision came in time (``on_approval_timeout="fail"``).
    """
    options = run.options.approvals
    asked = {
        "name": name,
        "tokens": budget.tokens,
        "used": used,
        "key": key if budget.key is not None else None,
        "key_expression": budget.key,
        "period_seconds": budget.period.total_seconds() if budget.period is not None else None,
        "window_end": window_end,
        "request": step_id,
    }
    request = {"agent": run.options.name, "budget": asked, "on_timeout": options.on_timeout}
    decision = _approvals.ask(run, approval_step_id(step_id), request, options)
    if isinstance(decision, dict) and decision.get("decision") == "approve":
        return
    if decision is None and options.on_timeout == "fail":
        raise _approvals.ApprovalTimeoutError(
            f"no one let {step_id} go over its token budget within {options.delta} "
            '(DurableAgent(approval_timeout=...), on_approval_timeout="fail")'
        )
    kept = decision.get("budget") if isinstance(decision, dict) else None
    if isinstance(kept, dict) and isinstance(kept.get("used"), int):
        used = kept["used"]  # the figure the person saw, on a replay too
    if decision is None:
        reason = f"not approved within {options.delta}"
    else:
        said = decision.get("reason") if isinstance(decision, dict) else None
        by = decision.get("by") if isinstance(decision, dict) else None
        reason = f"rejected by {by or 'someone'}" + (f": {said}" if said else "")
    raise _rejected(budget, step_id, name=name, key=key, used=used, reason=reason)


def _rejected(
    budget: TokenBudget,
    step_id: str,
    *,
    name: str | None,
    key: str | None,
    used: int,
    reason: str,
) -> TokenBudgetExceededError:
    if name is None or key is None:
        return budget.run_exceeded(used, step_id=step_id, reason=reason)
    return budget.exceeded(name, key, used, step_id=step_id, reason=reason)


async def _sleep_until(run: AgentRun, step_id: str, until: dt.datetime) -> None:
    ctx = run.ctx
    if isinstance(ctx, Context):
        await ctx.step.sleep_until(step_id, until)
    else:
        ctx.step.sleep_until(step_id, until)
