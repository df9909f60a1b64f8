"""Durable AI agents: Pydantic AI agents whose model requests and tool calls are steps.

``pip install 'stepline[ai]'``. Wrap an ``Agent`` in ``DurableAgent`` and run it bound to
a function's context (``agent.on(ctx).run(...)``): each model request and each tool call
is a step, replayed from its record and never made twice; a streamed response's text goes
onto the run's stream as it arrives, and ``fold`` builds a page's text from that stream;
``TokenBudget`` bounds the tokens a run may use. Guide: docs/ai-agents.md.

The integration touches Pydantic AI only through its public wrappers (``WrapperAgent``,
``WrapperModel``, ``WrapperToolset``; for an MCP server's tools listed from a record,
``MCPToolset.tool_for_tool_def``), and the stream, usage and budget modules know no
Pydantic AI type beyond a response's text and usage. An OpenAI Agents SDK integration
would add its own wrapper module (a ``Model`` whose ``get_response``/``stream_response``
and a ``FunctionTool`` whose ``on_invoke_tool`` go through the same ``_steps.run_step``),
and reuse ``_stream``, ``_usage`` and ``_run`` as they are.
"""

try:
    import pydantic_ai as _pydantic_ai  # noqa: F401
except ImportError as _missing:  # pragma: no cover - the extra is not installed
    raise ImportError("stepline.ai needs Pydantic AI: pip install 'stepline[ai]'") from _missing

from stepline.ai._agent import DurableAgent as DurableAgent
from stepline.ai._approvals import ApprovalTimeoutError as ApprovalTimeoutError
from stepline.ai._stream import fold as fold
from stepline.ai._usage import TokenBudget as TokenBudget
from stepline.ai._usage import TokenBudgetExceededError as TokenBudgetExceededError

__all__ = [
    "ApprovalTimeoutError",
    "DurableAgent",
    "TokenBudget",
    "TokenBudgetExceededError",
    "fold",
]
