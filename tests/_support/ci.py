"""Whether the suite runs under CI, where a missing service or package fails rather than skips.

Any non-empty ``CI`` other than ``0``/``false``/``no``/``off`` counts (``CI=true``,
``CI=1``, ``CI=yes``): runners differ in what they set, and a guard that only knew
``true`` would let ``CI=1`` skip silently.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import NoReturn

import pytest

FALSE = ("", "0", "false", "no", "off")


def under_ci() -> bool:
    """True when ``CI`` is set to anything but an empty or false value."""
    return os.environ.get("CI", "").strip().lower() not in FALSE


def unavailable(reason: str) -> NoReturn:
    """Fail under CI (a reviewer must never get a silently empty run), skip elsewhere."""
    if under_ci():
        pytest.fail(f"required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str) -> ModuleType:
    """``pytest.importorskip(name)`` that fails instead under CI (the dev extra has it)."""
    try:
        module: ModuleType = pytest.importorskip(name)
    except pytest.skip.Exception as exc:
        if under_ci():
            pytest.fail(f"{name} is required under CI (the dev extra installs it): {exc}")
        raise
    return module
