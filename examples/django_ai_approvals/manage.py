#!/usr/bin/env python
"""The refunds desk's command line: ``python manage.py demo`` runs everything.

``demo`` creates the databases, a staff user who may decide approvals, and runs
``runserver``; the engine runs inside the web process (``"ENGINE": "embedded"``), so
there is no second process to start.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "desk.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
