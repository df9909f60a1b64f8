"""Run streams: what a run publishes (``publish``), and readers woken as it does.

``wire`` reads a publish body (pure), ``hub`` wakes readers of one run (in this
process, and from other nodes through the store's notifications), ``service`` ties
them to the store: ``StreamService.publish`` and ``StreamService.page``.
"""

from __future__ import annotations
