"""The ``stepline`` command: ``dev`` / ``start`` (``commands``), ``runs`` / ``send`` (``runs``).

``main`` is the console script's entry point (``[project.scripts]``) and the Django command's.
"""

from __future__ import annotations

from stepline.engine._cli.commands import main as main

__all__ = ["main"]
