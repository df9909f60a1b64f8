"""Step-id hashing: SHA-1 of the user id, with a ``:N`` suffix for repeats."""

from __future__ import annotations

import functools
import hashlib

#: Hashed id of the ``RunComplete`` op (sha1 of ``"complete"``).
RUN_COMPLETE_ID = "0737c22d3bfae812339732d14d8c7dbd6dc4e09c"


@functools.lru_cache(maxsize=4096)  # a function's step ids recur in every call's replay
def hash_step_id(pre_hash_id: str) -> str:
    """Lowercase hex SHA-1 of the UTF-8 pre-hash id."""
    return hashlib.sha1(pre_hash_id.encode(), usedforsecurity=False).hexdigest()


class StepIdCounter:
    """Numbers repeated user step ids within one execution.

    The first use of ``foo`` hashes ``foo``, the second ``foo:1``, the third ``foo:2``.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, user_id: str) -> tuple[str, int | None]:
        """Return ``(hashed id, index)`` for the next use of ``user_id``.

        ``index`` is ``None`` for the first use and the suffix number after that.
        """
        index = self._seen.get(user_id)
        if index is None:
            self._seen[user_id] = 1
            return hash_step_id(user_id), None
        self._seen[user_id] = index + 1
        return hash_step_id(f"{user_id}:{index}"), index

    def peek(self, user_id: str) -> str:
        """The hashed id ``next(user_id)`` would return, without counting the use."""
        index = self._seen.get(user_id)
        return hash_step_id(user_id if index is None else f"{user_id}:{index}")
