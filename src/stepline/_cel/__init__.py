"""A small, fast subset of Google's Common Expression Language (CEL).

Function options (keys, ``cancel.if``, ``wait_for_event(if_exp=...)``, priorities) carry CEL
expressions. ``compile`` parses once and catches mistakes at registration time; the
resulting :class:`Program` evaluates against plain JSON-like values in microseconds,
supports CEL's error-absorbing ``&&``/``||`` and can be partially evaluated with
:meth:`Program.substitute`.
"""

from stepline._cel.errors import CelError as CelError
from stepline._cel.errors import EvaluationError as EvaluationError
from stepline._cel.errors import ExpressionError as ExpressionError
from stepline._cel.program import Program as Program
from stepline._cel.program import check as check
from stepline._cel.program import compile as compile

__all__ = [
    "CelError",
    "EvaluationError",
    "ExpressionError",
    "Program",
    "check",
    "compile",
]
