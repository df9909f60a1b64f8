"""What a ``POST /v1/runs/{id}/stream`` body may hold, read once into ``NewMessage``s. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from stepline import _json
from stepline.engine._model import storable
from stepline.engine._store.messages import NewMessage

#: the most messages one publish carries
MAX_MESSAGES = 500
#: the longest durable id (an SDK's hashed step id is 40 characters)
MAX_ID = 256
TOPIC = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")


class PublishError(ValueError):
    """A publish body the engine refuses; ``status`` is 400 or 413."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def messages(body: object, max_bytes: int) -> list[NewMessage]:
    """The messages of a publish body, in order.

    Args:
        body: the parsed JSON body: ``{"messages": [{"topic", "data", "id"}, ...]}``.
        max_bytes: the largest a message's data may be, as JSON.

    Returns:
        One ``NewMessage`` per message, its data as compact JSON text.

    Raises:
        PublishError: 400 naming the message and what is wrong with it; 413 for one
            whose data is over ``max_bytes``.
    """
    raw = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise PublishError(400, 'want {"messages": [{"topic": ..., "data": ..., "id": ...}]}')
    if not 1 <= len(raw) <= MAX_MESSAGES:
        raise PublishError(400, f"messages: want 1 to {MAX_MESSAGES}, got {len(raw)}")
    return [_message(i, m, max_bytes) for i, m in enumerate(raw)]


def _message(index: int, raw: object, max_bytes: int) -> NewMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise PublishError(400, f"{where}: want an object with topic, data and id")
    topic = raw.get("topic")
    if not isinstance(topic, str) or TOPIC.fullmatch(topic) is None:
        raise PublishError(
            400, f"{where}.topic: want 1-128 characters of A-Z a-z 0-9 _ . : / -, got {topic!r}"
        )
    if "data" not in raw:
        raise PublishError(400, f"{where}.data: missing (any JSON value, null included)")
    durable_id = raw.get("id")
    if durable_id is not None and (
        not isinstance(durable_id, str)
        or not 0 < len(durable_id) <= MAX_ID
        or not storable(durable_id)
    ):
        raise PublishError(400, f"{where}.id: want null or a string of 1-{MAX_ID} characters")
    encoded = _json.dumpb(raw["data"])
    size = len(encoded)
    if size > max_bytes:
        raise PublishError(
            413,
            f"{where}: data is {size} bytes as JSON, over the engine's limit of {max_bytes} "
            "(max_stream_message_bytes)",
        )
    return NewMessage(topic, encoded.decode(), durable_id)


def durable_ids(found: Sequence[NewMessage]) -> list[str]:
    """The durable ids among ``found``."""
    return [m.durable_id for m in found if m.durable_id is not None]
