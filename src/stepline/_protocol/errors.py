"""The wire's error object for an exception raised by a function or one of its steps."""

from __future__ import annotations

import os
import traceback
from typing import Any

from stepline import _errors

__all__ = ["error_body"]


def error_body(exc: BaseException) -> dict[str, Any]:
    """The wire error object ``{code, message, name, stack}`` for an exception."""
    if isinstance(exc, _errors.RetryAfterFailure):
        return error_body(exc.error)
    if isinstance(exc, _errors.StepError):
        return {"code": exc.code, "message": exc.message, "name": exc.name, "stack": exc.stack}
    code = exc.code if isinstance(exc, _errors.SteplineError) else "unknown"
    message = exc.message if isinstance(exc, _errors.SteplineError) else str(exc)
    return {"code": code, "message": message, "name": type(exc).__name__, "stack": _stack(exc)}


#: Stepline's own source files (the package's folder): their frames are left out.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _stack(exc: BaseException) -> str:
    """The traceback without Stepline's own frames: users see only their code."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(_PACKAGE_DIR)
    ]
    return (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(frames))
        + "".join(traceback.format_exception_only(type(exc), exc))
    )
