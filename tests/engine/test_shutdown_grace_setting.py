"""The shutdown grace: a setting, ``STEPLINE_SHUTDOWN_GRACE`` and ``--shutdown-grace``."""

from __future__ import annotations

import pytest

from stepline.engine._config import EngineConfigError, EngineSettings, resolve


def test_grace_defaults_to_30_s_and_reads_the_environment() -> None:
    assert EngineSettings().shutdown_grace == 30.0
    assert resolve(environ={}).shutdown_grace == 30.0
    assert resolve(environ={"STEPLINE_SHUTDOWN_GRACE": "2.5"}).shutdown_grace == 2.5
    # the flag (an override) wins over the environment
    env = {"STEPLINE_SHUTDOWN_GRACE": "2.5"}
    assert resolve(environ=env, shutdown_grace=0.0).shutdown_grace == 0.0


@pytest.mark.parametrize("text", ["-1", "soon", "nan", "inf"])
def test_a_bad_grace_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(EngineConfigError, match="STEPLINE_SHUTDOWN_GRACE must be a number"):
        resolve(environ={"STEPLINE_SHUTDOWN_GRACE": text})
