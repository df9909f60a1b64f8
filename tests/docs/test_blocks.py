"""Every Python, shell and console block of README.md and docs/*.md runs, as written.

Sybil parses each file into its blocks; one test per file runs them top to bottom in one
namespace, so a block continues the ones above it. A block that cannot run here says why
in an HTML comment on the line right above it, ``<!-- fragment: needs a Postgres server
-->``, and is counted, not run. Each test reports its counts (``docs_blocks`` in the
report's user properties, summed at the end of the run by this folder's conftest).

What a file's blocks get from this harness, and nothing else:

* a temporary working directory (so ``.stepline/`` databases land there), with
  ``STEPLINE_DEV=1`` and no other ``STEPLINE_*``/``INNGEST_*`` variable; what its blocks
  set in or remove from ``os.environ`` is undone when the file's test ends, so no later
  test in the worker (nor a child process it starts) inherits it;
* Python blocks run on one event loop per file, so a block may ``await`` at top level as
  the docs' snippets of async code do;
* a block whose first line is ``# name.py`` (``# shop/workflows.py``) is written to that
  file in the working directory and imported as that module when its turn comes
  (``from shop import client`` in a later block works, as does ``uvicorn main:app``); its
  names join the namespace. The ``# name.py`` blocks of a file make one project: all of
  them are written before the first block runs, so one may import another shown later;
* Django configures itself once per process, so a file that sets it up (``OWN_PROCESS``)
  runs in a pytest child process of its own;
* setup a reader does not need to see (a stub for the ``charge_card`` a snippet calls, an
  engine for ``await client.start(...)``) lives in the same file as an HTML comment
  ``<!-- invisible-code-block: python ... -->``, Sybil's own form; ``docs_engine(client,
  functions)`` opens a ``stepline.testing.TestEnv`` that the file's test closes (or
  ``docs_stop_engines()`` sooner), so the client's calls reach an in-process engine on a
  virtual clock, which skips to each next timer while a block awaits a run's result;
* shell lines (``$ `` lines of a console block; every line of a bash/sh block) run in
  ``bash`` with the venv's ``bin`` first on ``PATH``; their output is not compared (run
  ids and times differ each run), their exit status must be 0. A line that starts a
  server (``stepline dev``, ``uvicorn``, ``flask run``, ``python app.py``) goes on in the
  background once it listens on its ``--port`` (else ``STEPLINE_PORT``), until the file's
  test ends; the ports the docs name (8288, 8000, 5000) are swapped for free ones (in
  commands and in ``# name.py`` files alike), ``STEPLINE_PORT`` is the engine's and
  ``STEPLINE_API_BASE_URL`` points the CLI at it;
* TypeScript blocks (``ts``) and ``npx`` commands get the packages of
  ``tests/docs/typescript`` (openapi-typescript, openapi-fetch, typescript), installed from
  its committed lock (``tests/_support/npm``) and linked as the working directory's
  ``node_modules``, so ``npx`` runs them without asking the registry; each ``ts`` block is
  written to ``block_<line>.ts`` and must pass ``tsc --noEmit --strict`` (it type-checks,
  against the types a block above generated, say; it is not run).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Document, Example, Sybil
from sybil.parsers.markdown import CodeBlockParser

import stepline.testing
from tests._support import npm
from tests._support.processes import free_port

pytestmark = [
    pytest.mark.docs,
    pytest.mark.timeout(120),
    # the official SDK (docs/connect.md's worker) declares a class-based pydantic config
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
]

ROOT = Path(__file__).resolve().parents[2]
#: Real seconds one block may await: a block takes a few; a run left waiting on a timer
#: the env's clock will not reach fails here, naming what it waits for, before the
#: file's own timeout would stop the test with only a stack
BLOCK_SECONDS = 60.0
#: the files that configure Django, each in a child process
OWN_PROCESS = ("docs/django-tasks.md", "docs/outbox-django.md", "docs/web-django.md")
#: set in that child: where it writes its tally for the parent
_CHILD = "DOCS_BLOCKS_TALLY"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = ("python", "py")
SHELLS = ("bash", "sh", "shell", "console")
TYPESCRIPT = ("ts", "typescript")
#: the npm packages TypeScript blocks and ``npx`` commands use
NODE_PACKAGES = Path(__file__).with_name("typescript")

_FRAGMENT = re.compile(r"<!--\s*fragment:\s*(?P<reason>.+?)\s*-->")
_MODULE = re.compile(r"#\s*(?P<path>[\w/]+)\.py$", re.MULTILINE)
_SERVER = re.compile(
    r"\bstepline (dev|start)\b|\buvicorn\b|\bflask\b.*\brun\b|\brunserver\b|\bpython [\w/]+\.py$"
)
#: the ports the docs name: the engine's, then the apps'
_PORTS = ("8288", "8000", "5000")
_STEPLINE_ENV = re.compile(r"^(STEPLINE|INNGEST)_")


@dataclasses.dataclass
class Tally:
    """What one file's test did with its blocks."""

    ran: int = 0
    setup: int = 0
    fragments: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FileState:
    """One file's run: its directory, loop, modules, engines and servers."""

    cwd: Path
    loop: asyncio.AbstractEventLoop
    tally: Tally
    stack: contextlib.ExitStack
    modules: list[str] = dataclasses.field(default_factory=list)
    #: the free ports standing in for the ones the docs name, in commands and module files
    ports: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the engines ``docs_engine`` opened (closed ones stay, and are passed over)
    envs: list[stepline.testing.TestEnv] = dataclasses.field(default_factory=list)


def _state(example: Example) -> FileState:
    state: FileState = example.namespace["__docs_state__"]
    return state


def _fragment(example: Example) -> str | None:
    """The reason in a ``<!-- fragment: ... -->`` line right above the block, if any."""
    above = example.document.text[: example.start].rstrip().splitlines()
    found = _FRAGMENT.fullmatch(above[-1].strip()) if above else None
    return found["reason"] if found else None


def _invisible(example: Example) -> bool:
    return example.document.text[example.start :].lstrip().startswith("<!--")


def _where(example: Example) -> str:
    return f"{Path(example.path).relative_to(ROOT)}:{example.line}"


def _count(example: Example) -> bool:
    """Counts the block; False when it is a fragment (not to be run)."""
    tally = _state(example).tally
    if _invisible(example):
        tally.setup += 1
        return True
    reason = _fragment(example)
    if reason is not None:
        tally.fragments.append(f"{_where(example)}: {reason}")
        return False
    tally.ran += 1
    return True


def run_python(example: Example) -> None:
    """Runs a Python block in its file's namespace (top-level ``await`` allowed)."""
    if not _count(example):
        return
    state = _state(example)
    source = str(example.parsed)
    header = _MODULE.match(source)
    if header is not None:
        _import_block(example, state, header["path"], source)
        return
    code = compile(
        source, _where(example), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    result = eval(code, example.namespace)
    if inspect.iscoroutine(result):
        try:
            state.loop.run_until_complete(asyncio.wait_for(result, BLOCK_SECONDS))
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{_where(example)}: still waiting after {BLOCK_SECONDS:g} s; {_unended(state)}"
            ) from None


def _unended(state: FileState) -> str:
    """What the file's open engines' unended runs wait for: why a block still waits."""
    told = []
    for env in state.envs:
        try:
            runs = env.runs_sync()
        except stepline.ConfigError:  # closed
            continue
        for run in runs:
            info = run.describe_sync()
            if info.status.terminal:
                continue
            steps = [
                f"{step.name} {step.state()}{_last_error(step.error)}"
                for step in run.steps_sync()
                if step.status not in ("Completed", "Failed")
            ]
            told.append(f"run {run.run_id} ({info.function_id}) {info.status.value}: {steps}")
    return "; ".join(told) or "no run of an open engine is unended"


def _last_error(error: object) -> str:
    if isinstance(error, dict):
        return f" after {error.get('name')}: {error.get('message')}"
    return ""


def _write_module(state: FileState, path: str, source: str) -> None:
    file = state.cwd / f"{path}.py"
    file.parent.mkdir(parents=True, exist_ok=True)
    for port, free in state.ports.items():
        source = source.replace(port, free)
    file.write_text(source)


def _import_block(example: Example, state: FileState, path: str, source: str) -> None:
    """Imports a ``# name.py`` block's module (written before the file's first block)."""
    _write_module(state, path, source)
    name = path.replace("/", ".")
    importlib.invalidate_caches()
    module = importlib.import_module(name)
    state.modules.append(name)
    example.namespace.update(
        (key, value) for key, value in vars(module).items() if not key.startswith("__")
    )


def run_shell(example: Example) -> None:
    """Runs each command of a shell or console block; each must exit 0."""
    if not _count(example):
        return
    state = _state(example)
    ports = state.ports
    env = {key: value for key, value in os.environ.items() if not _STEPLINE_ENV.match(key)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["STEPLINE_PORT"] = ports["8288"]
    env["STEPLINE_API_BASE_URL"] = f"http://127.0.0.1:{ports['8288']}"  # the CLI's engine
    for written in _commands(example):
        command = written
        if re.match(r"\s*npx\b", command):
            _node_modules(state)
        for port, free in ports.items():
            command = command.replace(port, free)
        if _SERVER.search(command):
            state.stack.enter_context(_server(command, state.cwd, env))
            continue
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=state.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (
            f"{_where(example)}: {command!r} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )


def _commands(example: Example) -> list[str]:
    """A console block's ``$`` lines, or a bash block's lines (``\\`` continues one)."""
    language = str(example.region.lexemes["arguments"]).strip()
    lines = str(example.parsed).splitlines()
    if language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands: list[str] = []
    pending = ""
    for line in lines:
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            commands.append(pending)
        pending = ""
    return commands


def _node_modules(state: FileState) -> Path:
    """``tests/docs/typescript``'s packages, as the working directory's ``node_modules``."""
    linked = state.cwd / "node_modules"
    if not linked.exists():
        linked.symlink_to(npm.installed(NODE_PACKAGES), target_is_directory=True)
    return linked


def run_typescript(example: Example) -> None:
    """Type-checks a TypeScript block (``tsc --noEmit --strict``) in the working directory."""
    if not _count(example):
        return
    state = _state(example)
    tsc = _node_modules(state) / ".bin" / "tsc"
    source = state.cwd / f"block_{example.line}.ts"
    source.write_text(str(example.parsed))
    options = ["--noEmit", "--strict", "--target", "es2022", "--module", "esnext"]
    options += ["--moduleResolution", "bundler", "--types", "node", "--skipLibCheck"]
    done = subprocess.run(
        [str(tsc), *options, source.name],
        cwd=state.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{_where(example)}: tsc found\n{done.stdout}\n{done.stderr}"


@contextlib.contextmanager
def _server(command: str, cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """Starts a server command, waits until it listens on its port, then stops it."""
    named = re.search(r"--port[ =](\d+)", command)
    port = int(named[1] if named else env["STEPLINE_PORT"])
    log = cwd / f"server-{port}.log"
    with log.open("w") as out:
        # a session of its own: stopping it stops what bash started (uvicorn's reloader too)
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command!r} never listened on {port}:\n{log.read_text()}")
            time.sleep(0.1)
        yield
        if process.poll() is not None:
            pytest.fail(f"{command!r} stopped by itself:\n{log.read_text()}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


SYBIL = Sybil(
    parsers=[
        *(CodeBlockParser(language, run_python) for language in PYTHON),
        *(CodeBlockParser(language, run_shell) for language in SHELLS),
        *(CodeBlockParser(language, run_typescript) for language in TYPESCRIPT),
    ],
    patterns=["*.md"],
)


@pytest.mark.process
@pytest.mark.parametrize("path", DOCS, ids=[str(path.relative_to(ROOT)) for path in DOCS])
def test_blocks_run(
    path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
) -> None:
    name = str(path.relative_to(ROOT))
    if name in OWN_PROCESS and _CHILD not in os.environ:
        tally = _in_child(name, tmp_path)
    else:
        tally = _run_file(path, tmp_path, monkeypatch)
    if _CHILD in os.environ:
        Path(os.environ[_CHILD]).write_text(json.dumps(dataclasses.asdict(tally)))
    record_property("docs_blocks", dataclasses.asdict(tally))
    print(f"{name}: {tally.ran} run, {len(tally.fragments)} fragments")


def _in_child(name: str, tmp_path: Path) -> Tally:
    """Runs one file's test in a pytest child process; its tally."""
    out = tmp_path / "tally.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            f"--basetemp={tmp_path / 'child'}",  # pytest's own rotation would remove tmp_path
            f"{__file__}::test_blocks_run[{name}]",
        ],
        cwd=ROOT,
        env={**os.environ, _CHILD: str(out)},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, f"{name} in its own process:\n{done.stdout}\n{done.stderr}"
    return Tally(**json.loads(out.read_text()))


def _run_file(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tally:
    """Runs every block of one file, in order, in one namespace."""
    for key in list(os.environ):
        if _STEPLINE_ENV.match(key):
            monkeypatch.delenv(key)
    monkeypatch.setenv("STEPLINE_DEV", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the README's .venv/bin/stepline
    document: Document = SYBIL.parse(path)
    tally = Tally()
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        # a block may set a variable as a reader would in their shell (docs/ai-agents.md
        # sets CHAT_MODEL): undone with the file, else every later test in this worker,
        # and every child process such a test starts, would inherit it
        stack.callback(_restore_environ, dict(os.environ))
        state = FileState(
            cwd=tmp_path,
            loop=loop,
            tally=tally,
            stack=stack,
            ports={port: str(free_port()) for port in _PORTS},
        )
        stack.callback(loop.close)
        stack.callback(_forget_modules, state)
        engines = stack.enter_context(contextlib.ExitStack())

        def docs_engine(client: stepline.Client, functions: list[Any]) -> stepline.testing.TestEnv:
            env = engines.enter_context(stepline.testing.TestEnv(client, functions))
            state.envs.append(env)
            return env

        document.namespace.update(
            __name__=f"docs_{path.stem.replace('-', '_')}",
            __docs_state__=state,
            docs_engine=docs_engine,
            docs_stop_engines=engines.close,
        )
        examples = list(document.examples())
        for example in examples:
            source = str(example.parsed)
            header = _MODULE.match(source)
            if example.region.evaluator is run_python and header and _fragment(example) is None:
                _write_module(state, header["path"], source)
        for example in examples:
            example.evaluate()
    # every fenced block of these languages was parsed: run or counted as a fragment
    languages = "|".join(PYTHON + SHELLS + TYPESCRIPT)
    fences = re.findall(rf"^\s*```({languages})\s*$", path.read_text(), re.M)
    assert tally.ran + len(tally.fragments) == len(fences), f"{path}: a block Sybil did not see"
    return tally


def _restore_environ(saved: dict[str, str]) -> None:
    """Puts ``os.environ`` back as ``saved``: what the blocks set or removed, undone."""
    for key in [key for key in os.environ if key not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _forget_modules(state: FileState) -> None:
    for name in state.modules:
        for loaded in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            del sys.modules[loaded]
        sys.modules.pop(name.split(".")[0], None)


def test_what_a_files_blocks_do_to_the_environment_ends_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCS_BLOCKS_REMOVED", "kept")
    monkeypatch.setenv("DOCS_BLOCKS_SET", "")
    monkeypatch.delenv("DOCS_BLOCKS_SET")  # absent, and removed again at teardown if set
    tally = _run_file(ROOT / "tests" / "docs" / "environ_block.md", tmp_path, monkeypatch)
    assert tally.ran == 1
    assert "DOCS_BLOCKS_SET" not in os.environ
    assert os.environ.get("DOCS_BLOCKS_REMOVED") == "kept"


def test_every_block_is_known() -> None:
    """Each fenced block of these files is Python, shell, console or plain data/text."""
    known = {
        "", *PYTHON, *SHELLS, "json", "yaml", "js", "javascript", "ts", "typescript", "promql",
        "text", "http",
    }  # fmt: skip
    fence = re.compile(r"^\s*```(?P<language>\S*)\s*$", re.MULTILINE)
    unknown = [
        f"{path.relative_to(ROOT)}: {found['language']}"
        for path in DOCS
        for found in fence.finditer(path.read_text())
        if found["language"] not in known
    ]
    assert unknown == []
