"""How this SDK names itself on the wire."""

from __future__ import annotations

VERSION = "0.1.0"
LANGUAGE = "py"
#: ``X-Inngest-Sdk`` / ``User-Agent``: ``<sdk>:v<semver>`` with exactly one colon.
SDK_HEADER = f"stepline-py:v{VERSION}"
#: The ``sdk`` field of the registration body: ``<language>:v<semver>``.
SDK_REGISTRATION = f"{LANGUAGE}:v{VERSION}"
SDK_AUTHOR = "stepline"
