"""The event object: what triggers functions and what ``send`` delivers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from stepline import _errors

M = TypeVar("M", bound=pydantic.BaseModel)


@dataclasses.dataclass(slots=True)
class Event:
    """An event: a name, a JSON payload and optional metadata.

    Attributes:
        name: event name, e.g. ``"app/user.signup"``.
        data: JSON object payload; a pydantic model is accepted and encoded on send.
        id: optional idempotency key; a second event with the same id starts no new run.
        ts: milliseconds since the epoch; 0 means "when sent".
        user: deprecated user object, kept for wire compatibility.
        v: optional payload version.
    """

    name: str
    data: Mapping[str, Any] | pydantic.BaseModel = dataclasses.field(default_factory=dict)
    id: str = ""
    ts: int = 0
    user: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    v: str | None = None

    def __post_init__(self) -> None:
        # refused here, where the mistake is, rather than at send time far away
        if not isinstance(self.name, str):
            raise TypeError(f"Event.name must be a string, got {type(self.name).__name__}")
        if not self.name:
            raise ValueError("Event.name must be a non-empty event name, e.g. 'app/user.signup'")

    def data_as(self, model: type[M]) -> M:
        """Validate ``data`` into a pydantic model."""
        if isinstance(self.data, model):
            return self.data
        return model.model_validate(self._data_dict())

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent on the wire (empty ``id`` and ``v`` omitted)."""
        out: dict[str, Any] = {"name": self.name, "data": self._data_dict()}
        if self.id:
            out["id"] = self.id
        if self.ts:
            out["ts"] = self.ts
        if self.user:
            out["user"] = dict(self.user)
        if self.v is not None:
            out["v"] = self.v
        return out

    def _data_dict(self) -> dict[str, Any]:
        if isinstance(self.data, pydantic.BaseModel):
            dumped: dict[str, Any] = self.data.model_dump(mode="json")
            return dumped
        return dict(self.data)

    @classmethod
    def from_wire(cls, raw: object) -> Event:
        """Validate an event object received from the engine.

        Raises:
            BodyInvalidError: ``raw`` is not an event object.
        """
        if not isinstance(raw, dict):
            raise _errors.BodyInvalidError("event must be a JSON object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _errors.BodyInvalidError("event.name must be a non-empty string")
        data = raw.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            raise _errors.BodyInvalidError("event.data must be an object")
        ts = raw.get("ts", 0)
        if isinstance(ts, float) and ts.is_integer():
            ts = int(ts)
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise _errors.BodyInvalidError("event.ts must be an integer (milliseconds)")
        user = raw.get("user") or {}
        event_id = raw.get("id") or ""
        version = raw.get("v")
        if not isinstance(user, dict) or not isinstance(event_id, str):
            raise _errors.BodyInvalidError("event.user must be an object and event.id a string")
        return cls(
            name=name,
            data=data,
            id=event_id,
            ts=ts,
            user=user,
            v=version if isinstance(version, str) else None,
        )
