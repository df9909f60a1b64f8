"""Non-determinism detection: does a replay still match the run's recorded history?

Pure. ``ReplayTracker`` is told, during one call, which memoized steps the code reaches
(and in which parallel group) and which new steps it finds; ``result`` then compares that
with the recorded completion order (``ctx.stack``). A replay *diverged* when

- the call found new steps (or the function returned) while recorded steps were never
  reached (``missing``), or
- recorded steps were reached in an order that contradicts the record (``reordered``):
  two steps reached one after the other in the opposite order of their completion, or a
  recorded step reached after a new step. Steps of one parallel group (all groups nested
  in it) may complete in any order and are not compared with each other; steps of a race
  are not compared at all.

Patch markers (``ctx.patched``) are exempt: they are inserted before recorded progress
by design.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping
from types import FrameType
from typing import Literal

from stepline import _errors

Policy = Literal["warn", "fail"]
POLICIES: tuple[Policy, ...] = ("warn", "fail")
#: Where a reached memo sits: ``None`` outside any parallel group, else its outermost group.
_Group = int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Divergence:
    """How one replay departed from the recorded history.

    Attributes:
        policy: the function's ``nondeterminism`` policy.
        missing: recorded step ids never reached, in recorded order.
        reordered: recorded step ids reached out of order, in recorded order.
        new: ids of the new steps the call found, in the order found.
        names: user step ids by hashed id, where this call knows them.
    """

    policy: Policy
    missing: tuple[str, ...]
    reordered: tuple[str, ...]
    new: tuple[str, ...]
    names: Mapping[str, str]

    def header(self) -> str:
        """The ``X-Stepline-Nondeterminism`` value: compact JSON, keys in contract order."""
        value = {
            "policy": self.policy,
            "missing": list(self.missing),
            "reordered": list(self.reordered),
            "new": list(self.new),
        }
        return json.dumps(value, separators=(",", ":"))

    def describe(self) -> str:
        """One human line naming the steps (user ids where known, else hashed ids)."""
        parts = []
        for label, ids in (
            ("missing", self.missing),
            ("reordered", self.reordered),
            ("new", self.new),
        ):
            if ids:
                parts.append(f"{label}: {', '.join(self._label(i) for i in ids)}")
        return "; ".join(parts)

    def error(self) -> _errors.NonDeterminismError:
        """The error that fails the call under the ``fail`` policy."""
        return _errors.NonDeterminismError(
            f"the replay no longer matches the run's recorded steps ({self.describe()}); "
            "the code changed while the run was in flight: use ctx.patched(...) or pin "
            "versions: see docs/versioning.md",
            missing=self.missing,
            reordered=self.reordered,
            new=self.new,
        )

    def _label(self, hashed_id: str) -> str:
        name = self.names.get(hashed_id)
        return f'"{name}"' if name is not None else hashed_id


#: a memo the code reached: its hashed id, its parallel group, in a race, found late
#: (after a new step of another group); a plain tuple, as one is made per memo per call
_Reached = tuple[str, _Group, bool, bool]


class ReplayTracker:
    """Follows one call's replay; see the module docstring for what counts as divergence.

    Args:
        stack: the recorded completion order (``ctx.stack``).
        memo_ids: the ids of the request's memos.
        policy: the function's policy, carried into the result.
    """

    __slots__ = (
        "_exempt",
        "_groups",
        "_highest",
        "_in_order",
        "_memo_ids",
        "_modes",
        "_names",
        "_new",
        "_new_groups",
        "_position",
        "_reached",
        "_seen",
        "locations",
        "policy",
    )

    def __init__(self, stack: Iterable[str], memo_ids: Collection[str], policy: Policy) -> None:
        self._position: dict[str, int] = {}
        for index, hashed_id in enumerate(stack):
            self._position.setdefault(hashed_id, index)
        self._memo_ids = memo_ids
        self.policy = policy
        self._reached: list[_Reached] = []
        #: every memo so far reached outside groups, on time, in recorded order: then
        #: nothing is reordered and the verdict needs no pass over them (the usual case)
        self._in_order = True
        self._highest = -1
        self._seen: set[str] = set()
        self._exempt: set[str] = set()
        self._new: list[str] = []
        self._new_groups: set[_Group] = set()
        self._names: dict[str, str] = {}
        self._modes: list[bool] = []  # open parallel groups, innermost last: is it a race
        self._groups = 0
        #: where the code reached each step (``file:line``), kept when a replay check asks
        self.locations: dict[str, str] | None = None

    # -- what the execution reports -----------------------------------------------------

    def enter_group(self, race: bool) -> None:
        """A ``parallel`` group opens (nested groups belong to the outermost one)."""
        if not self._modes:
            self._groups += 1
        self._modes.append(race)

    def exit_group(self) -> None:
        """The innermost open group closes."""
        self._modes.pop()

    def exempt(self, hashed_id: str) -> None:
        """A patch marker: never missing, never out of order."""
        self._exempt.add(hashed_id)
        self._seen.add(hashed_id)

    def reached(self, hashed_id: str, user_id: str) -> None:
        """The code reached a memoized step."""
        self._seen.add(hashed_id)
        self._names[hashed_id] = user_id
        if self.locations is not None:
            self.locations.setdefault(hashed_id, caller_location())
        if hashed_id in self._exempt:
            return
        modes = self._modes
        group: _Group = None
        late = race = False  # the usual case: outside any group, no new step found yet
        if modes or self._new_groups:
            group = self._groups if modes else None
            late = bool(self._new_groups) and any(g is None or g != group for g in self._new_groups)
            race = bool(modes) and any(modes)
        self._reached.append((hashed_id, group, race, late))
        if self._in_order:
            position = self._position.get(hashed_id)
            if group is not None or late or race or (position or 0) < self._highest:
                self._in_order = False
            elif position is not None:
                self._highest = position

    def found_new(self, hashed_id: str, user_id: str) -> None:
        """The code found a step with no memo."""
        self._names[hashed_id] = user_id
        if self.locations is not None:
            self.locations.setdefault(hashed_id, caller_location())
        self._new.append(hashed_id)
        self._new_groups.add(self._group())

    # -- the verdict --------------------------------------------------------------------

    def was_reached(self, hashed_id: str) -> bool:
        """Whether the code reached this memo (or patch marker) in this call."""
        return hashed_id in self._seen

    def diverged_so_far(self) -> bool:
        """Whether finding a new step now is a divergence (before the call ends)."""
        return bool(self._unseen() or self._reordered())

    def result(self, *, returned: bool) -> Divergence | None:
        """The divergence of the whole call, or None when the replay matched.

        Args:
            returned: the function returned (a run that ends is progress, like a new step).
        """
        missing = self._unseen() if (self._new or returned) else []
        reordered = self._reordered()
        if not missing and not reordered:
            return None
        return Divergence(
            policy=self.policy,
            missing=tuple(missing),
            reordered=tuple(reordered),
            new=tuple(self._new),
            names=dict(self._names),
        )

    def _group(self) -> _Group:
        return self._groups if self._modes else None

    def _unseen(self) -> list[str]:
        unseen = [i for i in self._memo_ids if i not in self._seen]
        return sorted(unseen, key=self._order)

    def _order(self, hashed_id: str) -> int:
        return self._position.get(hashed_id, len(self._position))

    def _reordered(self) -> list[str]:
        """Steps reached against the recorded order, in one pass each way.

        Consecutive memos of one group form a unit compared as a whole; a memo is out
        of order when an earlier unit holds a later-recorded memo, or a later unit an
        earlier-recorded one.
        """
        if self._in_order:
            return []
        units: list[list[tuple[str, int]]] = []
        last_group: _Group = None
        late: set[str] = set()
        for hashed_id, group, race, was_late in self._reached:
            position = self._position.get(hashed_id)
            if was_late and not race:
                late.add(hashed_id)
            if position is None or race:
                continue
            if group is None or group != last_group or not units:
                units.append([])
            units[-1].append((hashed_id, position))
            last_group = group
        out = set(late)
        highest = -1
        for unit in units:
            out.update(i for i, p in unit if p < highest)
            highest = max(highest, *(p for _, p in unit))
        lowest = len(self._position)
        for unit in reversed(units):
            out.update(i for i, p in unit if p > lowest)
            lowest = min(lowest, *(p for _, p in unit))
        return sorted(out, key=self._order)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_location() -> str:
    """The innermost frame outside Stepline's package and asyncio: ``path:line``."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_PACKAGE) and f"{os.sep}asyncio{os.sep}" not in path:
            return f"{_shown(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


@functools.lru_cache(maxsize=256)
def _shown(path: str) -> str:
    """``path`` relative to the working directory when under it (a replay asks per step)."""
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if shown.startswith("..") else shown
