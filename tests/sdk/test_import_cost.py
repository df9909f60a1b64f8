"""What ``import stepline`` loads: every CLI command and serverless cold start pays it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.process


def test_importing_the_sdk_leaves_httpx_for_its_first_use() -> None:
    """httpx costs a sixth of the import's CPU; a blocking client on plain HTTP never uses it."""
    code = (
        "import sys, stepline\n"
        "client = stepline.Client('t', is_production=False)\n"
        "assert 'httpx' not in sys.modules, 'httpx imported with the package'\n"
        "from stepline._transport import performers\n"
        "performers.AsyncTransport()._clients  # made lazily too\n"
        "assert 'httpx' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
