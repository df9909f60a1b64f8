"""The declarations: a route's ``Operation``, its query parameters and the links between routes."""

from __future__ import annotations

import dataclasses

from stepline.engine._http.contract.schemas import Schema

__all__ = ["Link", "Operation", "Param", "param"]


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    description: str = ""
    #: may be given more than once (``?attribute=a=1&attribute=b=2``)
    repeated: bool = False
    required: bool = False
    deprecated: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: a value of this operation's answer feeds another operation."""

    name: str
    #: the operation it feeds, as ``"METHOD /path"`` (the table's path)
    target: str
    #: the target's parameter -> a runtime expression over this answer
    parameters: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One route's contract beyond its credentials (which are the access table's)."""

    method: str
    path: str
    summary: str
    tag: str
    #: the success status and its body (None: not JSON, see ``media``)
    answer: Schema | None
    status: int = 200
    #: the other success statuses with the same body (a start that found its run: 200)
    also: tuple[int, ...] = ()
    query: tuple[Param, ...] = ()
    body: Schema | None = None
    body_required: bool = False
    #: refusals beyond the ones every route may answer (400, 401, 503), with their meaning
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    #: the answer's media type when it is not JSON (or both, for a stream's page)
    media: tuple[str, ...] = ("application/json",)
    links: tuple[Link, ...] = ()
    description: str = ""
    deprecated: bool = False


def param(name: str, schema: Schema, description: str = "", **more: bool) -> Param:
    """A query parameter (``more``: ``repeated``, ``required``, ``deprecated``)."""
    return Param(name, schema, description, **more)
