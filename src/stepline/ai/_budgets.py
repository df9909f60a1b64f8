"""A period budget's check before a model request (``TokenBudget(period=...)``).

The engine keeps the count (``engine._runs.tokens``): a model-request step carries its
budget in its op (``charge``), and the transaction that records it adds its tokens. Before
a request that has not run yet, the agent reads the count for the run's key
(``GET /v1/token-budgets/{name}``); over budget it fails the run, or sleeps until the
window ends (a durable sleep step, ``<request>:budget``, then ``:budget:1``...) and reads
again.

Replays make the same steps: the sleeps recorded for a request are replayed first, in
order, and a request already recorded is not checked again (its count now includes its
own tokens), so the history a replay walks never changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stepline._api import tokens as _api_tokens
from stepline._execution.context import Context, call_state
from stepline._execution.publish import publisher_of
from stepline.ai._run import AgentRun
from stepline.ai._usage import TokenBudget

__all__ = ["before_request"]


async def before_request(run: AgentRun, budget: TokenBudget, step_id: str) -> dict[str, Any]:
    """Check ``budget`` for the model request ``step_id``; the budget entry its step's op
    carries, for the engine to charge.

    Raises:
        TokenBudgetExceededError: the count is spent and the budget fails the run.
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
        until = dt.datetime.fromtimestamp(usage.window_end, dt.timezone.utc)
        await _sleep_until(run, wait_id, until)  # the call ends here: the engine sleeps
    return {"name": name, "key": key, "period": period}


async def _sleep_until(run: AgentRun, step_id: str, until: dt.datetime) -> None:
    ctx = run.ctx
    if isinstance(ctx, Context):
        await ctx.step.sleep_until(step_id, until)
    else:
        ctx.step.sleep_until(step_id, until)
