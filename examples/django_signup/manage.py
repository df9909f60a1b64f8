#!/usr/bin/env python
"""The signup example's command line: ``python manage.py runserver`` runs everything.

The durable functions run in the web process (``"ENGINE": "embedded"`` in settings), so
there is no second process to start. ``python manage.py signup ada@example.com --wait 10``
signs a user up from the terminal.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signup.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
