"""``python -m stepline.connect module:client`` (and ``stepline connect``): a worker process."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from stepline._client import Client
from stepline._connect.worker import Worker
from stepline._definition.function import Function
from stepline._errors import ConfigError

__all__ = ["functions_of", "load", "main"]


def functions_of(module: object, client: Client) -> list[Function]:
    """The functions of ``client``'s app that ``module`` defines at its top level."""
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, Function) and value.failure_of is None
    ]
    return [fn for fn in found if fn.app_id == client.app_id]


def load(target: str) -> Worker | tuple[Client, list[Function]]:
    """``module[:name]``: a ``Worker``, or a ``Client`` and the module's functions.

    Raises:
        ConfigError: the module or the name is not there, or is neither.
    """
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    if name:
        value = getattr(module, name, None)
        if value is None:
            raise ConfigError(f"{module_name!r} has no {name!r}")
    else:
        found = [v for v in vars(module).values() if isinstance(v, (Worker, Client))]
        if len(found) != 1:
            raise ConfigError(f"name the client: {module_name}:<client> ({len(found)} found)")
        value = found[0]
    if isinstance(value, Worker):
        return value
    if isinstance(value, Client):
        functions = functions_of(module, value)
        if not functions:
            raise ConfigError(f"{module_name!r} defines no function of app {value.app_id!r}")
        return value, functions
    raise ConfigError(f"{target!r} is a {type(value).__name__}, not a Client or a Worker")


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m stepline.connect") -> int:
    """The command line: serve ``module:client`` over Connect until SIGTERM (drained)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve an app's functions over Connect (docs/connect.md)."
    )
    parser.add_argument(
        "target", help="module:client (or module:worker, a stepline.connect.Worker)"
    )
    parser.add_argument("--instance-id", help="this process's name (default: host-pid)")
    parser.add_argument("--max-concurrency", type=int, help="most calls at once")
    parser.add_argument("--log-level", default="INFO", help="default INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # httpx logs each request at INFO: the worker's own lines say what matters, and the
        # first line of a failed start is then the reason
        logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.path.insert(0, "")  # the current directory, as python -m does
    try:
        found = load(args.target)
        if isinstance(found, Worker):
            worker = found
        else:
            client, functions = found
            worker = Worker(
                client,
                functions,
                instance_id=args.instance_id,
                max_concurrency=args.max_concurrency,
            )
        worker.run()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return 0
