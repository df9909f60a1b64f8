"""The official SDKs' recorded exchanges, kept with the tests (see golden/captures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: ``tests/golden/captures``: one folder per SDK (``py``, ...), one JSON file per exchange
CAPTURES = Path(__file__).resolve().parents[1] / "golden" / "captures"


def load_capture(kind: str, name: str) -> dict[str, Any]:
    """The capture ``name`` of SDK ``kind`` (``load_capture("py", "03_send_event.json")``)."""
    data: dict[str, Any] = json.loads((CAPTURES / kind / name).read_text())
    return data
