"""ARCHITECTURE.md names files that exist: every path it cites in backticks is found.

A path is looked up from the repository's root, from ``src/stepline/`` and from
``src/stepline/engine/`` (the document names engine files from the engine's package), and
a dotted module (``_serving.access``) as that module's file or package.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASES = (ROOT, ROOT / "src" / "stepline", ROOT / "src" / "stepline" / "engine")
#: a backticked token that names a file or folder: has a slash, or ends in .py/.md/.js
_PATH = re.compile(r"`([\w./-]+(?:/|\.py|\.md|\.js)[\w./-]*)`")


def cited() -> list[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return sorted({m.group(1).split(":")[0] for m in _PATH.finditer(text)})


def found(path: str) -> bool:
    if path.startswith(("/", "http")) or path in {"/v1", "/e"}:
        return True
    bare = path.rstrip("/")
    return any((base / bare).exists() for base in BASES)


def test_architecture_cites_paths() -> None:
    paths = cited()
    assert len(paths) > 40, paths  # the walk-through and the package paragraphs cite files


def test_every_path_architecture_cites_exists() -> None:
    missing = [path for path in cited() if not found(path)]
    assert not missing, f"ARCHITECTURE.md cites files that do not exist: {missing}"
