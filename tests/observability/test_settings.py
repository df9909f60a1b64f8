"""Observability settings: resolved once, from flags and the environment."""

from __future__ import annotations

import pytest

import stepline.logs
from stepline.engine import EngineConfigError, resolve
from stepline.engine._cli.commands import _parser


def test_defaults_and_environment() -> None:
    plain = resolve(environ={})
    assert (plain.metrics, plain.tracing, plain.log_format) == (True, False, "text")
    env = {"STEPLINE_METRICS": "0", "STEPLINE_TRACING": "true", "STEPLINE_LOG_FORMAT": "JSON"}
    chosen = resolve(environ=env)
    assert (chosen.metrics, chosen.tracing, chosen.log_format) == (False, True, "json")
    with pytest.raises(EngineConfigError, match="log format"):
        resolve(environ={"STEPLINE_LOG_FORMAT": "xml"})


def test_flags_win_over_the_environment() -> None:
    from stepline.engine._cli.commands import _observability

    args = _parser().parse_args(["dev", "--log-format", "json", "--otel", "--no-metrics"])
    settings = resolve(environ={"STEPLINE_LOG_FORMAT": "text"}, **_observability(args))
    assert (settings.metrics, settings.tracing, settings.log_format) == (False, True, "json")
    quiet = _parser().parse_args(["start"])
    assert _observability(quiet) == {}  # the environment decides


def test_the_logs_module_is_pinned() -> None:
    assert stepline.logs.__all__ == ["FIELDS", "JsonFormatter", "RunContextFilter", "configure"]
    assert stepline.logs.FIELDS == ("run_id", "function_id", "step_id", "attempt")
