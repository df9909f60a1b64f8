"""How this SDK names itself on the wire, and the package's one version.

``VERSION`` is the release's version: the wheel's (hatchling reads it from this file:
``[tool.hatch.version]`` in pyproject.toml), ``stepline version``'s and the headers'
below. It moves with every release, with a section of CHANGELOG.md.
"""

from __future__ import annotations

VERSION = "0.2.0"
LANGUAGE = "py"
#: ``X-Inngest-Sdk`` / ``User-Agent``: ``<sdk>:v<semver>`` with exactly one colon.
SDK_HEADER = f"stepline-py:v{VERSION}"
#: The ``sdk`` field of the registration body: ``<language>:v<semver>``.
SDK_REGISTRATION = f"{LANGUAGE}:v{VERSION}"
SDK_AUTHOR = "stepline"
