"""The SQL of searchable run attributes (``run_attributes``): set, read and filter runs by them.

A mixin of ``SqlTx``'s dialect that both stores' transactions inherit, as ``messages``
is (issue 27, run control).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AttributesTx:
    """``Tx`` methods over the table; mixed into each store's transaction class."""

    def _x(self, sql: str, args: Sequence[Any] = ()) -> Any:  # pragma: no cover - SqlTx's
        raise NotImplementedError

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:  # pragma: no cover
        raise NotImplementedError
