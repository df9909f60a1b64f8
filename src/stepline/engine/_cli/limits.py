"""The size and gateway limit flags of ``stepline dev`` and ``stepline start``."""

from __future__ import annotations

import argparse
from typing import Any

from stepline.engine._cli import db as _db


def add_arguments(sub: argparse.ArgumentParser) -> None:
    """Add the gateway, answer-size, stream-message and retention flags to ``sub``."""
    sub.add_argument(
        "--gateway-allow",
        action="append",
        metavar="CIDR|HOST",
        help="let the AI gateway call this network or host although it is loopback, private "
        "or link-local (repeatable; env STEPLINE_GATEWAY_ALLOW, comma-separated)",
    )
    sub.add_argument(
        "--gateway-max-calls",
        type=int,
        metavar="N",
        help="AI gateway steps one run may take (default 100; env STEPLINE_GATEWAY_MAX_CALLS)",
    )
    sub.add_argument(
        "--max-step-output-bytes",
        type=int,
        metavar="N",
        help="the largest step output stored (default 4 MiB; env STEPLINE_MAX_STEP_OUTPUT_BYTES)",
    )
    sub.add_argument(
        "--max-stream-message-bytes",
        type=int,
        metavar="N",
        help="the largest message a run may publish to its stream (default 1 MiB; env "
        "STEPLINE_MAX_STREAM_MESSAGE_BYTES)",
    )
    sub.add_argument(
        "--max-stream-readers-per-run",
        type=int,
        metavar="N",
        help="the most readers of one run's stream at once; more get 429 (default 32; env "
        "STEPLINE_MAX_STREAM_READERS_PER_RUN)",
    )
    sub.add_argument(
        "--max-stream-readers-per-caller",
        type=int,
        metavar="N",
        help="the most stream readers one client address holds at once; more get 429 "
        "(default 256; env STEPLINE_MAX_STREAM_READERS_PER_CALLER)",
    )
    _db.add_retention_argument(sub)


def chosen(args: argparse.Namespace) -> dict[str, Any]:
    """The gateway, size and retention settings the flags override."""
    found: dict[str, Any] = {}
    if args.gateway_allow:
        found["gateway_allow"] = tuple(args.gateway_allow)
    for name in (
        "gateway_max_calls",
        "max_step_output_bytes",
        "max_stream_message_bytes",
        "max_stream_readers_per_run",
        "max_stream_readers_per_caller",
    ):
        if getattr(args, name) is not None:
            found[name] = getattr(args, name)
    if args.retention is not None:
        found["retention"] = args.retention
    return found
