"""``python -m stepline.engine``: the ``stepline`` command without the script entry point."""

from __future__ import annotations

import sys

from stepline.engine._cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
