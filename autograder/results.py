"""Graded results, and the one function that writes Gradescope's results.json.

The JSON follows Gradescope's specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): top-level ``score``,
``execution_time``, ``output``, ``stdout_visibility`` and ``tests[]`` with ``name``, ``number``,
``score``, ``max_score``, ``status``, ``output``, ``output_format``, ``visibility``, ``tags``.
A run that could not grade still writes a complete, valid file (``failure_report``): every
rubric test gets a row with zero points, and one row says what went wrong.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .rubric import GradedTest

OUTPUT_LIMIT = 8192        # characters of feedback per test
RESULTS_LIMIT = 1 << 20    # bytes of the whole results.json
GRADER_ROW = GradedTest(test_id="grader_error", part="grader", name="the autograder could not grade this submission",
                        weight=0.0, visibility="visible", timeout=0.0, number="0.0", extra_credit=False)


@dataclass
class TestResult:
    """The outcome of one rubric test.

    test: its rubric entry.
    score: points earned, between 0 and test.weight.
    passed: whether the check passed in full.
    output: feedback for the student.
    """

    test: GradedTest
    score: float
    passed: bool
    output: str
    seconds: float = 0.0
    """Wall-clock seconds the check took."""
    student_seconds: float = 0.0
    """Of those, seconds spent inside student code (as the child processes report it)."""

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"


@dataclass
class GradingReport:
    """Everything one grading run produced.

    results: one per rubric test, in rubric order (plus a grader-error row if grading failed).
    seed: the seed random instances were drawn from.
    model: a description of the model P6 used ("tiny (fingerprint …)"), or "" if none.
    device: torch device of the child processes.
    execution_time: wall-clock seconds of the run.
    notes: lines for the top-level output (layout of the upload, seed, model).
    """

    results: list[TestResult]
    seed: int | None = None
    model: str = ""
    device: str = "cpu"
    execution_time: float = 0.0
    notes: list[str] = field(default_factory=list)
    launcher: dict = field(default_factory=dict)
    """What the run's fork server reported at start-up (seconds to import torch and map the
    model, its address space): for timing reports, never shown to students."""

    @property
    def score(self) -> float:
        return round(sum(r.score for r in self.results), 6)

    @property
    def max_score(self) -> float:
        return round(sum(r.test.weight for r in self.results if not r.test.extra_credit), 6)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 40] + f"\n… ({len(text) - limit + 40} characters cut)"


def results_json(report: GradingReport) -> dict:
    """The Gradescope results dict for ``report``, kept under RESULTS_LIMIT bytes."""
    tests = [{
        "name": r.test.title,
        "number": r.test.number,
        "score": round(r.score, 6),
        "max_score": r.test.weight,
        "status": r.status,
        "output": _clip(r.output, OUTPUT_LIMIT),
        "output_format": "text",
        "visibility": r.test.visibility,
        "tags": [r.test.part],
    } for r in report.results]
    data = {
        "score": report.score,
        "execution_time": int(round(report.execution_time)),
        "output": "\n".join(report.notes),
        "output_format": "text",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    per_test = OUTPUT_LIMIT
    while len(json.dumps(data)) > RESULTS_LIMIT and per_test > 200:  # many long outputs: shorten all
        per_test //= 2
        for row, r in zip(tests, report.results):
            row["output"] = _clip(r.output, per_test)
    return data


def write_results(report: GradingReport, path: Path | str) -> Path:
    """Write results.json atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(results_json(report), handle, indent=1)
    os.replace(tmp, path)
    return path


def failure_report(tests: list[GradedTest], message: str, *, execution_time: float = 0.0) -> GradingReport:
    """A report for a run that could not grade: zero for every test, and a row saying why."""
    rows = [TestResult(GRADER_ROW, 0.0, False, message)]
    rows += [TestResult(t, 0.0, False, f"Not graded: {message.splitlines()[0]}") for t in tests]
    return GradingReport(results=rows, execution_time=execution_time, notes=[message])


def format_table(report: GradingReport) -> str:
    """The terminal summary: part, test, score/max and status per row, then the total."""
    width = max([len(r.test.name) for r in report.results] + [10])
    lines = [f"{'part':<6}  {'test':<{width}}  {'score/max':>11}  status"]
    for r in report.results:
        lines.append(f"{r.test.part:<6}  {r.test.name:<{width}}  {r.score:>5g}/{r.test.weight:<5g}  {r.status}")
    lines.append(f"{'total':<6}  {'':<{width}}  {report.score:>5g}/{report.max_score:<5g}")
    return "\n".join(lines)
