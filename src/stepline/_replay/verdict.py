"""What a deploy check found: a verdict per run, gathered per function, as text and JSON.

Pure. A run's verdict is one of

- ``ok``: the new code reaches the run's recorded steps in their order;
- ``diverged``: it no longer does (a recorded step not reached, two reached out of order,
  a new step before recorded ones): the run would take a non-determinism notice, or fail
  under ``nondeterminism="fail"``, once this code serves it;
- ``failed``: the new code cannot replay the run at all (its function is gone, or the code
  raises before it is past the recorded steps);
- ``inconclusive``: the replay could not tell (the code outside steps tried the network, or
  raised past the record, where the check answers what the run waits on with a stand-in).

``ok`` and ``inconclusive`` pass the check (the latter with a warning, or fails it under
``--strict``); ``diverged`` and ``failed`` fail it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from stepline._replay.journal import Journal

__all__ = ["FORMAT", "CheckReport", "FunctionReport", "RunVerdict", "StepRef"]

FORMAT = "stepline.deploy-check/1"
Kind = Literal["ok", "diverged", "failed", "inconclusive"]
KINDS: tuple[Kind, ...] = ("ok", "diverged", "failed", "inconclusive")
FAILING = frozenset({"diverged", "failed"})


@dataclasses.dataclass(frozen=True, slots=True)
class StepRef:
    """A step a verdict names: its hashed id, the id the code gave, where the code has it."""

    id: str
    name: str
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"id", "name", "location"}``."""
        return {"id": self.id, "name": self.name, "location": self.location}

    def label(self) -> str:
        """``"charge"`` (at app/flows.py:12)."""
        where = f" (at {self.location})" if self.location else ""
        return f'"{self.name}"{where}'


@dataclasses.dataclass(frozen=True, slots=True)
class RunVerdict:
    """What replaying one run against the new code showed.

    Attributes:
        run_id: the run.
        function_id: its function.
        app_id: its app.
        run_status: the run's status when checked (``Running``, ``Completed``...).
        verdict: ``ok``, ``diverged``, ``failed`` or ``inconclusive``.
        missing: recorded steps the new code no longer reaches, in recorded order.
        reordered: recorded steps it reaches out of their recorded order.
        new: the steps the new code finds where the record has others.
        error: what failed, for ``failed`` and ``inconclusive``.
        notes: what else the replay saw (network attempts refused...).
        app_version: the app version the run started on.
        departs: the first step the new code reaches where the record has another: where
            the change is (None when the replay could not tell).
        expected: the recorded step the record has there.
        sdk: what the app's SDK calls itself (``x-inngest-sdk``), for a check over a serve
            URL; None in process (Stepline's own SDK).
    """

    run_id: str
    function_id: str
    app_id: str
    run_status: str
    verdict: Kind
    missing: tuple[StepRef, ...] = ()
    reordered: tuple[StepRef, ...] = ()
    new: tuple[StepRef, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()
    app_version: str | None = None
    departs: StepRef | None = None
    expected: StepRef | None = None
    sdk: str | None = None

    @property
    def official_sdk(self) -> bool:
        """Whether the app checked is on an official ``inngest`` SDK (no ``ctx.patched``)."""
        return self.sdk is not None and not self.sdk.startswith("stepline")

    @classmethod
    def of(cls, journal: Journal, verdict: Kind, **details: Any) -> RunVerdict:
        """The verdict ``verdict`` on ``journal``'s run, with ``details`` (missing...)."""
        return cls(
            run_id=journal.run_id,
            function_id=journal.function_id,
            app_id=journal.app_id,
            run_status=journal.status,
            app_version=journal.app_version,
            verdict=verdict,
            **details,
        )

    def summary(self) -> str:
        """One line: what differs, with step names and code locations."""
        if self.verdict == "ok":
            return "replays as recorded"
        parts = []
        if self.missing:
            parts.append("recorded step no longer reached: " + _labels(self.missing))
        if self.reordered:
            parts.append("recorded steps reached out of order: " + _labels(self.reordered))
        if self.departs is not None and self.expected is not None:
            parts.append(
                f"the record has {self.expected.label()} next where the code reaches "
                f"{self.departs.label()}"
            )
        elif self.new and (self.missing or self.reordered):
            parts.append("the code now reaches " + _labels(self.new[:3]))
        if self.error:
            parts.append(self.error)
        return "; ".join(parts) or self.verdict

    def fix(self) -> str | None:
        """What to change before deploying, or None when nothing needs to."""
        if self.verdict == "diverged" and self.official_sdk:
            first = (self.missing or self.reordered)[0].name
            return (
                f"the official SDK ({self.sdk}) has no ctx.patched: pin these runs to their "
                "version (give the app a version, inngest.Inngest(app_version=...), serve the "
                "new one at its own URL and keep the old one serving until these runs end: "
                "stepline apps versions shows them drain), or ship the change under a new "
                f'function id and keep this one until its runs end; keep step "{first}" where '
                "the record has it otherwise: see docs/versioning.md"
            )
        if self.verdict == "diverged":
            anchor = self.departs.location if self.departs is not None else None
            if anchor is None:
                anchor = next((s.location for s in self.reordered if s.location), None)
            first = (self.missing or self.reordered)[0].name
            where = f" at {anchor}" if anchor else ""
            return (
                f'wrap the change{where} in `if ctx.patched("{_change_id(first)}"):` (new '
                "code) with the old steps in its `else:`, so runs recorded before it keep "
                'their steps; or pin these runs to their version (versioning="pinned", '
                "keep the old version serving until they end): see docs/versioning.md"
            )
        if self.verdict == "failed":
            return self.error and (
                "keep the function and the code the recorded steps need until these runs "
                "end, or pin them to their version: see docs/deploying.md"
            )
        return None

    def location(self) -> str | None:
        """Where in the new code the run departs from its record (``path:line``), if known."""
        if self.departs is not None and self.departs.location:
            return self.departs.location
        return next(
            (s.location for s in (*self.reordered, *self.new, *self.missing) if s.location),
            None,
        )

    def to_json(self) -> dict[str, Any]:
        """The verdict's object in the report."""
        return {
            "run_id": self.run_id,
            "function_id": self.function_id,
            "app_id": self.app_id,
            "run_status": self.run_status,
            "app_version": self.app_version,
            "verdict": self.verdict,
            "missing": [s.to_json() for s in self.missing],
            "reordered": [s.to_json() for s in self.reordered],
            "new": [s.to_json() for s in self.new],
            "error": self.error,
            "departs": None if self.departs is None else self.departs.to_json(),
            "expected": None if self.expected is None else self.expected.to_json(),
            "notes": list(self.notes),
            "sdk": self.sdk,
            "summary": self.summary(),
            "fix": self.fix(),
        }


def _labels(steps: Sequence[StepRef]) -> str:
    return ", ".join(s.label() for s in steps)


def _change_id(step_name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in step_name.lower()).strip("-")
    return f"{cleaned or 'step'}-change"


def counts(verdicts: Iterable[RunVerdict]) -> dict[str, int]:
    """``{"runs": n, "ok": n, "diverged": n, "failed": n, "inconclusive": n}``."""
    out: dict[str, int] = {"runs": 0, **dict.fromkeys(KINDS, 0)}
    for verdict in verdicts:
        out["runs"] += 1
        out[verdict.verdict] += 1
    return out


@dataclasses.dataclass(slots=True)
class FunctionReport:
    """The verdicts of one function's runs."""

    function_id: str
    app_id: str
    results: list[RunVerdict] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The function's object in the report."""
        return {
            "function_id": self.function_id,
            "app_id": self.app_id,
            "counts": counts(self.results),
            "results": [r.to_json() for r in self.results],
        }


@dataclasses.dataclass(slots=True)
class CheckReport:
    """A whole check: every function's runs, and whether the deploy is safe for them.

    Attributes:
        target: what was checked (``module:client`` or a serve URL).
        engine: the engine's URL the runs came from.
        checked_at: when, RFC 3339.
        seconds: how long the check took.
        functions: one report per function that has runs, by function id.
        strict: inconclusive verdicts fail the check too.
    """

    target: str
    engine: str
    checked_at: str
    seconds: float = 0.0
    functions: dict[str, FunctionReport] = dataclasses.field(default_factory=dict)
    strict: bool = False

    def add(self, verdict: RunVerdict) -> None:
        """Record one run's verdict under its function."""
        report = self.functions.get(verdict.function_id)
        if report is None:
            report = FunctionReport(verdict.function_id, verdict.app_id)
            self.functions[verdict.function_id] = report
        report.results.append(verdict)

    @property
    def verdicts(self) -> list[RunVerdict]:
        """Every run's verdict, function by function."""
        return [v for f in self.functions.values() for v in f.results]

    @property
    def ok(self) -> bool:
        """Whether no run would diverge or fail (nor, under ``strict``, stay unknown)."""
        failing = FAILING | ({"inconclusive"} if self.strict else set())
        return not any(v.verdict in failing for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        """The report (``--json``, and what ``--upload`` sends the engine)."""
        return {
            "format": FORMAT,
            "checked_at": self.checked_at,
            "target": self.target,
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "strict": self.strict,
            "ok": self.ok,
            "counts": counts(self.verdicts),
            "functions": [f.to_json() for f in self.functions.values()],
        }

    def annotations(self) -> list[str]:
        """GitHub Actions workflow commands: an ``::error`` per run that would diverge or
        fail (``::warning`` for an inconclusive one), on the line of the new code where it
        departs when known, so the job's summary and the pull request's diff show it."""
        lines = []
        for verdict in self.verdicts:
            if verdict.verdict == "ok":
                continue
            failing = verdict.verdict in FAILING or self.strict
            level = "error" if failing else "warning"
            props = [f"title={_escape_property(f'stepline deploy check: {verdict.function_id}')}"]
            where = verdict.location()
            if where is not None:
                path, _, line = where.rpartition(":")
                if path and line.isdigit():
                    props[:0] = [f"file={_escape_property(path)}", f"line={line}"]
            text = f"run {verdict.run_id} ({verdict.run_status}): {verdict.verdict}: "
            text += verdict.summary()
            fix = verdict.fix()
            if fix:
                text += f"\nfix: {fix}"
            lines.append(f"::{level} {','.join(props)}::{_escape_data(text)}")
        return lines

    def markdown(self) -> str:
        """The summary for a CI job's page (``$GITHUB_STEP_SUMMARY``): a verdict line and the
        text summary in a code block."""
        head = "passed" if self.ok else "**failed**"
        return f"### stepline deploy check {head}\n\n```text\n{self.render()}\n```\n"

    def render(self) -> str:
        """The summary a CI log shows: a line per function, the runs that fail it, a verdict."""
        total = counts(self.verdicts)
        lines = [
            f"stepline deploy check: {self.target} against {self.engine}",
            f"  {total['runs']} run(s) of {len(self.functions)} function(s) replayed in "
            f"{self.seconds:.2f} s",
            "",
        ]
        for report in self.functions.values():
            tally = counts(report.results)
            bad = tally["diverged"] + tally["failed"]
            if bad:
                mark, what = "FAIL", f"{bad} of {tally['runs']} run(s) would diverge or fail"
            elif tally["inconclusive"]:
                mark = "FAIL" if self.strict else "warn"
                what = f"{tally['inconclusive']} of {tally['runs']} run(s) inconclusive"
            else:
                mark, what = "ok  ", f"{tally['runs']} run(s) replay as recorded"
            lines.append(f"  {mark} {report.function_id}: {what}")
            for verdict in report.results:
                if verdict.verdict == "ok":
                    continue
                lines.append(
                    f"       run {verdict.run_id} ({verdict.run_status}): {verdict.verdict}: "
                    f"{verdict.summary()}"
                )
                fix = verdict.fix()
                if fix:
                    lines.append(f"         fix: {fix}")
                lines.extend(f"         note: {note}" for note in verdict.notes)
        if not self.functions:
            lines.append("  no live run to check")
        lines.append("")
        if self.ok:
            warn = total["inconclusive"]
            lines.append(
                "PASSED: no run would diverge"
                + (f" ({warn} inconclusive: see the notes above)" if warn else "")
            )
        else:
            bad = total["diverged"] + total["failed"]
            extra = f", {total['inconclusive']} inconclusive" if self.strict else ""
            lines.append(f"FAILED: {bad} run(s) would diverge or fail{extra}")
        return "\n".join(lines)


def _escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub Actions reads it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value, escaped as GitHub Actions reads it."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
