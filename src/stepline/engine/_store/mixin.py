"""The base of the store's SQL mixins: what each of them calls on ``SqlTx``.

``SqlTx`` (``sql.py``) holds the connection; the mixins beside it (queue, controls,
messages, ...) each add the SQL of one concern and call back into it through these
methods. Both stores' transaction classes inherit ``SqlTx`` first, so its methods (and
``PostgresTx``'s) are the ones that run; these only declare them, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["SqlMixin"]


class SqlMixin:
    """The connection methods a mixin of the store's SQL may call."""

    def _x(self, sql: str, args: Sequence[Any] = ()) -> Any:  # pragma: no cover - SqlTx's
        raise NotImplementedError

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _row_lock(self) -> str:  # pragma: no cover - SqlTx's (and PostgresTx's)
        raise NotImplementedError

    def _lock(self, name: str) -> None:  # pragma: no cover - SqlTx's
        raise NotImplementedError
