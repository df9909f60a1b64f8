"""Every test the docs cite exists: a cited test file is under tests/, a cited name is defined.

SECURITY.md holds each promise to the tests it names, and README.md, ARCHITECTURE.md,
docs/*.md, bench/README.md and tests/README.md cite tests too. A refactor that renames or
moves a test leaves those citations pointing at nothing; this module reads them all and
names every one that resolves to no file or no test.

A citation is a word of inline code (outside fenced blocks) in one of these forms:

* ``faults/test_x.py::test_name``, ``tests/engine/test_x.py``: a test file by its path
  under ``tests/`` (the ``tests/`` prefix optional), then any number of ``::name`` parts
  (``::TestClass::test_method``), each of which the file (or one of the files) defines as
  a function or class; a ``[parameter id]`` is ignored. ``*`` and ``?`` glob, in the path
  and in the names (``endpoints/test_*_durable.py::*killed*``): a glob must match
  something;
* ``::test_other``: a name in the file(s) of the previous citation of the same passage (a
  paragraph, a list item, a table row);
* ``test_x.py``: a bare file name, resolved when exactly one file under ``tests/`` has that
  name (otherwise the doc must say which directory);
* ``repo:path`` (``inngest-py:tests/test_inngest/test_connect/test_close.py``): a file of
  another repository, named so; not ours, not checked.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def documents() -> list[Path]:
    fixed = ["SECURITY.md", "README.md", "ARCHITECTURE.md", "bench/README.md", "tests/README.md"]
    return [ROOT / name for name in fixed] + sorted((ROOT / "docs").glob("*.md"))


#: a code span: a run of backticks, its text, the same run again (CommonMark's rule)
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
#: a ``::name`` part: an identifier (globs allowed), then perhaps a parameter id
_NAMES = r"(?P<names>(?:::[A-Za-z_*?][\w*?]*(?:\[[^\]\s]*\])?)*)"
#: a test file (by path or bare name) and its names
_CITATION = re.compile(r"(?:tests/)?(?P<file>(?:[\w*?.-]+/)*test_[\w*?]*\.py)" + _NAMES)
#: a name continuing the previous citation's file
_CONTINUATION = re.compile(_NAMES)
#: another repository's file: ``repo:path`` or ``owner/repo:path``
_FOREIGN = re.compile(r"[A-Za-z][\w.-]*(?:/[\w.-]+)?:[\w./*-]+\.py(?:::\S*)?")
#: what a block starts with: a table row, a heading, a list item
_BLOCK_START = re.compile(r"\s*(?:\||#|[-*+] |\d+[.)] )")


@dataclass(frozen=True)
class Citation:
    line: int
    text: str
    #: the file as written (a path under tests/, or a bare name); None: a continuation
    #: with no file before it in its passage
    file: str | None
    names: tuple[str, ...]
    #: whether ``file`` is a path (``tests/...`` or ``dir/...``), not a bare name
    path: bool


@dataclass(frozen=True)
class Parsed:
    citations: list[Citation]
    #: words taken for another repository's files (``repo:path``), with their lines
    foreign: list[tuple[int, str]]


def _prose(text: str) -> str:
    """The text with fenced code blocks blanked (lines kept, so line numbers still hold)."""
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        marker = stripped[:3]
        if fence is None and marker in ("```", "~~~"):
            fence = marker
            lines[i] = ""
        elif fence is not None:
            if stripped.startswith(fence):
                fence = None
            lines[i] = ""
    return "\n".join(lines)


def _passages(text: str) -> list[tuple[int, str]]:
    """The text's passages, each with its first line's number: a new one at each blank
    line, table row, heading and list item. A code span never crosses from one to the next
    (in Markdown it cannot), and a ``::name`` continues a file of its own passage only."""
    passages: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            passages.append((number + 1, []))
        elif _BLOCK_START.match(line) or not passages:
            passages.append((number, [line]))
        else:
            passages[-1][1].append(line)
    return [(first, "\n".join(lines)) for first, lines in passages if lines]


def parse(text: str) -> Parsed:
    citations: list[Citation] = []
    foreign: list[tuple[int, str]] = []
    for first, passage in _passages(_prose(text)):
        last: Citation | None = None  # the passage's last citation of a file
        for span in _SPAN.finditer(passage):
            for word in re.finditer(r"\S+", span.group(2)):
                line = first + passage.count("\n", 0, span.start(2) + word.start())
                token = word.group().strip("(),;'\"")
                if _FOREIGN.fullmatch(token):
                    foreign.append((line, token))
                elif cited := _CITATION.fullmatch(token):
                    names = _split_names(cited.group("names"))
                    file = cited.group("file")
                    path = token.startswith("tests/") or "/" in file
                    last = Citation(line, token, file, names, path)
                    citations.append(last)
                elif token.startswith("::") and (more := _CONTINUATION.fullmatch(token)):
                    names = _split_names(more.group("names"))
                    if names:  # not an address such as `::1`
                        of, is_path = (last.file, last.path) if last else (None, False)
                        citations.append(Citation(line, token, of, names, is_path))
    return Parsed(citations, foreign)


def _split_names(names: str) -> tuple[str, ...]:
    return tuple(part.split("[")[0] for part in names.split("::") if part)


def _files(tests: Path, file: str, path: bool) -> tuple[list[Path], str | None]:
    """The files a citation names, or why it names none."""
    if path:
        found = sorted(p for p in tests.glob(file) if p.is_file())
        return found, None if found else f"no file tests/{file}"
    found = sorted(p for p in tests.rglob(file) if p.is_file() and "__pycache__" not in p.parts)
    if not found:
        return [], f"no file named {file} under tests/"
    if len(found) > 1 and not any(ch in file for ch in "*?"):
        where = ", ".join(str(p.relative_to(tests.parent)) for p in found)
        return [], f"{file} is several files ({where}): name its directory"
    return found, None


@cache
def _defined(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8")
    return frozenset(re.findall(r"^[ \t]*(?:async[ \t]+def|def|class)[ \t]+(\w+)", text, re.M))


def problems(text: str, tests: Path = TESTS) -> list[str]:
    """Each citation of ``text`` that resolves to no test file or no test, as
    ``line: `citation`: why``."""
    found: list[str] = []
    for c in parse(text).citations:
        if c.file is None:
            found.append(f"{c.line}: `{c.text}`: continues no cited file in its passage")
            continue
        files, why = _files(tests, c.file, c.path)
        if why is not None:
            found.append(f"{c.line}: `{c.text}`: {why}")
            continue
        defined = frozenset().union(*(_defined(p) for p in files))
        for name in c.names:
            if not any(fnmatch.fnmatchcase(d, name) for d in defined):
                where = c.file if len(files) > 1 else str(files[0].relative_to(tests.parent))
                found.append(f"{c.line}: `{c.text}`: {where} defines no {name}")
    return found


def _name(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@pytest.mark.parametrize("doc", documents(), ids=_name)
def test_every_cited_test_exists(doc: Path) -> None:
    stale = problems(doc.read_text(encoding="utf-8"))
    assert not stale, f"{_name(doc)} cites tests that do not exist:\n" + "\n".join(
        f"{_name(doc)}:{p}" for p in stale
    )


def test_the_docs_cite_tests() -> None:
    """The parser finds the citations: SECURITY.md alone holds hundreds."""
    security = parse((ROOT / "SECURITY.md").read_text(encoding="utf-8")).citations
    assert len(security) > 200, len(security)
    assert sum(len(c.names) for c in security) > 150
    everywhere = sum(len(parse(d.read_text(encoding="utf-8")).citations) for d in documents())
    assert everywhere > len(security) + 50


STALE = """\
# Promises

| Promise | Tests |
| --- | --- |
| keys | `faults/test_sec_keys.py::test_a_huge_session_expiry_is_a_401`, `::test_made_up` |
| a kit that is gone | `web/test_sec_kit_that_was_removed.py::test_anything` |
| a continuation in a row of its own | `::test_a_huge_session_expiry_is_a_401` |

The dashboard's tests (`test_embedded.py`) and the engine's
(`tests/engine/test_crash.py::test_*_no_such_glob*`), inngest-py's own
(`inngest-py:tests/test_inngest/test_connect/test_close.py`), an address (`::1`) and code:

```
pytest tests/faults/test_not_cited_in_a_fence.py
```
"""


def test_stale_citations_are_named_with_their_line() -> None:
    assert problems(STALE) == [
        "5: `::test_made_up`: tests/faults/test_sec_keys.py defines no test_made_up",
        "6: `web/test_sec_kit_that_was_removed.py::test_anything`: "
        "no file tests/web/test_sec_kit_that_was_removed.py",
        "7: `::test_a_huge_session_expiry_is_a_401`: continues no cited file in its passage",
        "9: `test_embedded.py`: test_embedded.py is several files "
        "(tests/dashboard/test_embedded.py, tests/sdk/test_embedded.py): name its directory",
        "10: `tests/engine/test_crash.py::test_*_no_such_glob*`: "
        "tests/engine/test_crash.py defines no test_*_no_such_glob*",
    ]


def test_what_resolves_is_not_reported() -> None:
    parsed = parse(STALE)
    assert [(c.line, c.file, c.names) for c in parsed.citations][:2] == [
        (5, "faults/test_sec_keys.py", ("test_a_huge_session_expiry_is_a_401",)),
        (5, "faults/test_sec_keys.py", ("test_made_up",)),
    ]
    assert parsed.foreign == [(11, "inngest-py:tests/test_inngest/test_connect/test_close.py")]
    fine = (
        "`tests/endpoints/test_*_durable.py::test_*` and `engine/test_crash.py`, `pytest\n"
        "tests/test_free_port.py` (a path, though at the top), `test_official_wire.py::*[x]`,\n"
        "`test_known_steps.py`, `connect/test_scenarios.py::test_start_mode_*[stepline]` and\n"
        "`::test_a_killed_worker_call_goes_to_another_worker`, in the same passage."
    )
    assert [(c.line, c.file, c.path) for c in parse(fine).citations] == [
        (1, "endpoints/test_*_durable.py", True),
        (1, "engine/test_crash.py", True),
        (2, "test_free_port.py", True),
        (2, "test_official_wire.py", False),
        (3, "test_known_steps.py", False),
        (3, "connect/test_scenarios.py", True),
        (4, "connect/test_scenarios.py", True),
    ]
    assert problems(fine) == []
