"""Optional dependencies: which extra brings what, and the one-line error when one is missing.

Checked where a feature is asked for (``serve(..., engine="embedded")``, an
``EmbeddedEngine``, ``stepline dev|start``), not where it is first imported: a missing
package then fails at once with the ``pip install`` line to run, never as a crashed
thread or a traceback.
"""

from __future__ import annotations

import importlib.util

from stepline._errors import ConfigError

#: what the engine imports to serve (in the base install; missing only after --no-deps)
ENGINE = ("starlette",)
#: what ``stepline dev|start`` imports besides
SERVER = ("starlette", "uvicorn")
#: what a ``postgres://`` database needs
POSTGRES = ("psycopg", "psycopg_pool")


class MissingExtraError(ConfigError):
    """A feature needs a package that is not installed; the message names the extra."""

    code = "extra_missing"


def missing(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be imported, or None."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a hidden or half-installed package
            return name
    return None


def problem(feature: str, extra: str, modules: tuple[str, ...]) -> str | None:
    """One line naming the missing package and the extra that brings it, or None.

    Args:
        feature: what was asked for (``engine="embedded"``, ``stepline dev``).
        extra: the extra that installs ``modules``.
        modules: the top-level modules the feature imports.
    """
    name = missing(modules)
    if name is None:
        return None
    return (
        f"{feature} needs the {name} package, which is not installed: "
        f"pip install 'stepline[{extra}]'"
    )


def require(feature: str, extra: str, modules: tuple[str, ...]) -> None:
    """Raise ``MissingExtraError`` (one line) if one of ``modules`` is not installed.

    Raises:
        MissingExtraError: a module is missing; the message says what to install.
    """
    line = problem(feature, extra, modules)
    if line is not None:
        raise MissingExtraError(line)


def postgres(url: str) -> bool:
    """Whether ``url`` names a Postgres database."""
    return url.startswith(("postgres://", "postgresql://"))
