"""``python -m stepline.connect module:client``: serve an app over Connect (until SIGTERM)."""

import sys

from stepline._connect.cli import main

sys.exit(main())
