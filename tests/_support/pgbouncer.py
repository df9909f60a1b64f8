"""PgBouncer in front of the test Postgres, started for one test on a port of its own.

Every database of ``POSTGRES_URL``'s server is reachable through it (``*``, a fallback
entry), so a test's fresh database (``databases.postgres_database``) is too. PgBouncer
refuses to run as root: as root the test starts it with ``-u nobody``. A machine without
``pgbouncer`` fails the test under CI and skips it elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tests._support.ci import unavailable
from tests._support.databases import POSTGRES_URL
from tests._support.polling import wait_until
from tests._support.processes import free_port, log_tail, spawned

PoolMode = Literal["session", "transaction"]


@contextlib.contextmanager
def pgbouncer(directory: Path, mode: PoolMode, *, server_connections: int) -> Iterator[int]:
    """PgBouncer in ``mode`` around the block; its port.

    Args:
        directory: where its configuration and log go (readable by the user it runs as).
        mode: ``pool_mode``.
        server_connections: the most server connections it opens per database and user
            (``default_pool_size``): in transaction mode, fewer than the clients it lends
            them to.
    """
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    server = urllib.parse.urlsplit(POSTGRES_URL)
    port = free_port()
    config = directory / f"pgbouncer-{mode}.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432} "
        f"user={server.username or 'postgres'}\n"
        "[pgbouncer]\n"
        f"pool_mode = {mode}\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = any\n"
        f"default_pool_size = {server_connections}\n"
        "max_client_conn = 1000\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    directory.chmod(0o755)
    config.chmod(0o644)
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    log = directory / f"pgbouncer-{mode}.log"
    with spawned([binary, *user, str(config)], log=log):
        wait_until(lambda: _accepts(port), timeout=10, message=lambda: log_tail(log))
        yield port


def through(port: int, database_url: str) -> str:
    """``database_url`` (a database of ``POSTGRES_URL``'s server) through PgBouncer's port."""
    parts = urllib.parse.urlsplit(database_url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
