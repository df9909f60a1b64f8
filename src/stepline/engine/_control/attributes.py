"""Searchable run attributes: names and values checked once, set in one transaction.

An attribute is a name (1-64 letters, digits, ``_ . : -``) and a value kept as a string
(strings as given; numbers and booleans as their JSON text, so ``7`` and ``true`` filter
as ``"7"`` and ``"true"``). A run keeps at most 32; setting one again replaces its value.
They are set at start (the start API's ``attributes``) or later (``POST
/v1/runs/{id}/attributes``, from inside the run or from outside), and filter runs
(``GET /v1/runs?attribute=name:value``, every one given must match).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from stepline.engine._errors import NotFoundError
from stepline.engine._model import storable
from stepline.engine._store import Store, Tx
from stepline.engine._store.attributes import MAX_ATTRIBUTES, MAX_VALUE

__all__ = ["AttributesError", "checked", "put", "query_filter", "set_on"]

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class AttributesError(ValueError):
    """Attributes the engine refuses (answered with 400, naming the problem)."""


def checked(raw: object) -> dict[str, str]:
    """``raw`` as attributes to store.

    Raises:
        AttributesError: not an object of names to strings, numbers or booleans; a name
            or value out of bounds; more than ``MAX_ATTRIBUTES``.
    """
    if not isinstance(raw, Mapping):
        raise AttributesError('attributes: want an object of names to values, {"plan": "pro"}')
    if len(raw) > MAX_ATTRIBUTES:
        raise AttributesError(f"attributes: at most {MAX_ATTRIBUTES} per run, got {len(raw)}")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AttributesError(
                f"attributes: name {str(name)[:80]!r} must be 1-64 letters, digits or _ . : -"
            )
        out[name] = _text(name, value)
    return out


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise AttributesError(f"attributes: {name}: want a string, number or boolean")
    if len(text) > MAX_VALUE or not storable(text):
        raise AttributesError(
            f"attributes: {name}: values are at most {MAX_VALUE} characters, without NUL"
        )
    return text


def query_filter(values: Sequence[str]) -> dict[str, str]:
    """The ``?attribute=name:value`` query values (repeatable) as a filter.

    More names than a run keeps (``MAX_ATTRIBUTES``) match no run, and each one adds a
    subquery the database plans with the others (Postgres's planning grows with their
    square), so such a filter is refused rather than run.

    Raises:
        AttributesError: a value without ``:`` or with an impossible name; more than
            ``MAX_ATTRIBUTES`` names.
    """
    found: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not _NAME.fullmatch(name) or len(value) > MAX_VALUE:
            raise AttributesError(
                f"attribute: want name:value (a name of 1-64 letters, digits or _ . : -), "
                f"got {item[:80]!r}"
            )
        found[name] = value
        if len(found) > MAX_ATTRIBUTES:
            raise AttributesError(
                f"attribute: at most {MAX_ATTRIBUTES} filters (the most attributes a run "
                f"keeps), got more"
            )
    return found


def put(tx: Tx, run_id: str, attributes: Mapping[str, str]) -> dict[str, str]:
    """Set ``attributes`` on ``run_id`` in ``tx``; returns all of the run's attributes.

    Raises:
        AttributesError: the run would pass ``MAX_ATTRIBUTES`` (the caller's transaction
            must roll back: raising inside ``Store.atomic`` does).
    """
    count = tx.attributes.set_attributes(run_id, attributes)
    if count > MAX_ATTRIBUTES:
        raise AttributesError(
            f"attributes: a run keeps at most {MAX_ATTRIBUTES}, it would have {count}"
        )
    return tx.attributes.get_attributes([run_id]).get(run_id, {})


async def set_on(store: Store, run_id: str, raw: object) -> dict[str, str]:
    """``POST /v1/runs/{id}/attributes``: set attributes on a run (live or ended).

    Raises:
        NotFoundError: no such run.
        AttributesError: as ``checked`` and ``put``.
    """
    attributes = checked(raw)

    def work(tx: Tx) -> dict[str, str]:
        if tx.get_run(run_id) is None:
            raise NotFoundError(f"run {run_id!r} not found")
        return put(tx, run_id, attributes)

    return dict(await store.atomic(work))
