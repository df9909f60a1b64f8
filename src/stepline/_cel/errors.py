"""The errors of the CEL package: one base, one for bad source text, one for evaluation."""

from __future__ import annotations

__all__ = ["CelError", "EvaluationError", "ExpressionError"]

# Long expressions are shown as a window around the offending column so the
# message stays readable (and bounded when the input is fuzzed or hostile).
_WINDOW = 60


class CelError(Exception):
    """Base of every error raised by :mod:`stepline._cel`."""


class EvaluationError(CelError):
    """Evaluating a compiled program failed: a missing key, a type mismatch, an overflow."""


class ExpressionError(CelError, ValueError):
    """The source text is not a valid expression of the supported CEL subset.

    Attributes:
        reason: what is wrong, without the location.
        text: the whole source text.
        position: 0-based offset of the problem in ``text``.
        line: 1-based line of the problem.
        column: 1-based column of the problem within its line.
    """

    def __init__(self, reason: str, text: str, position: int) -> None:
        position = max(0, min(position, len(text)))
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        self.reason = reason
        self.text = text
        self.position = position
        self.line = text.count("\n", 0, position) + 1
        self.column = position - start + 1
        super().__init__(_render(reason, text[start:end], self.line, self.column, "\n" in text))

    def __reduce__(self) -> tuple[type[ExpressionError], tuple[str, str, int]]:
        # The default would call ExpressionError(message) and fail: keep it picklable.
        return type(self), (self.reason, self.text, self.position)


def _render(reason: str, line_text: str, line: int, column: int, multiline: bool) -> str:
    offset = column - 1
    if len(line_text) > _WINDOW:
        first = max(0, min(offset - _WINDOW // 2, len(line_text) - _WINDOW))
        shown = line_text[first : first + _WINDOW]
        prefix = "..." if first else ""
        suffix = "..." if first + _WINDOW < len(line_text) else ""
        caret = len(prefix) + offset - first
        shown = prefix + shown + suffix
    else:
        shown, caret = line_text, offset
    # Tabs and other control characters would shift the caret; show them as spaces.
    shown = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in shown)
    where = f"line {line}, column {column}" if multiline else f"column {column}"
    return f'{reason} at {where} in "{shown}"\n  | {shown}\n  | {" " * caret}^'
