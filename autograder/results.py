"""Graded results, and the one function that writes Gradescope's results.json.

The JSON follows Gradescope's specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): top-level ``score``,
``execution_time``, ``output``, ``stdout_visibility`` and ``tests[]`` with ``name``, ``number``,
``score``, ``max_score``, ``status``, ``output``, ``output_format``, ``visibility``, ``tags``.
A run that could not grade still writes a complete, valid file (``failure_report``): every
rubric test gets a row with zero points, and one row says what went wrong.

Feedback carries text the student controls (exception messages, tracebacks, printed output,
returned strings, file names). The two functions that write it out, ``results_json`` (every
name and output of results.json) and ``TablePrinter`` (every line on the terminal), pass it
through ``printable``, so that no control character reaches a terminal or Gradescope's page raw.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .rubric import GradedTest

OUTPUT_LIMIT = 8192        # characters of feedback per test
DIAGNOSTICS_LIMIT = 65536  # characters of the staff's diagnostics row
DIAGNOSTICS_NAME = "[staff] grader diagnostics: tracebacks and pytest's log (hidden from students)"
RESULTS_LIMIT = 1 << 20    # bytes of the whole results.json
# C0 controls but \n and \t (ESC, CR, backspace, bell, …), DEL, C1 controls (U+0080..U+009F: 0x9b is
# a one-character CSI on some terminals), and the bidirectional marks and overrides that reorder text.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
GRADER_ROW = GradedTest(test_id="grader_error", part="grader", name="the autograder could not grade this submission",
                        weight=0.0, visibility="visible", timeout=0.0, number="0.0", extra_credit=False)


@dataclass
class TestResult:
    """The outcome of one rubric test.

    test: its rubric entry.
    score: points earned, between 0 and test.weight.
    passed: whether the check passed in full.
    output: feedback for the student.
    grader_fault: the row could not be graded because of the grader (internal error, model
        unavailable); the submission is not to blame.
    """

    test: GradedTest
    score: float
    passed: bool
    output: str
    seconds: float = 0.0
    """Wall-clock seconds the check took."""
    student_seconds: float = 0.0
    """Of those, seconds spent inside student code (as the child processes report it)."""
    peak_rss_mb: float = 0.0
    """The peak resident memory of the child that ran the student's code, in MiB (timing reports)."""
    grader_fault: bool = False
    """Not graded because of the grader (an internal error, no model), not the student."""

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
    status: ``graded``; ``rejected`` (the upload cannot be graded: no Python files, several
        submissions, …); or ``grader_error`` (some rows could not be graded because of the grader).
    not_run: tests of the rubric left out of this run (``--part``, hidden tests in a self-check),
        so the summary can count them.
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
    status: str = "graded"
    not_run: list[GradedTest] = field(default_factory=list)
    diagnostics: str = ""
    """The grader's own tracebacks and pytest's log when something went wrong on the grader's
    side: results.json carries them in a hidden row worth 0 of 0 points (staff only)."""

    @property
    def score(self) -> float:
        return round(sum(r.score for r in self.results), 6)

    @property
    def max_score(self) -> float:
        """Points of the assignment's total (extra credit comes on top)."""
        return round(sum(r.test.weight for r in self.results if not r.test.extra_credit), 6)

    @property
    def extra_credit_score(self) -> float:
        return round(sum(r.score for r in self.results if r.test.extra_credit), 6)

    @property
    def extra_credit_max(self) -> float:
        return round(sum(r.test.weight for r in self.results if r.test.extra_credit), 6)


def printable(text: str) -> str:
    """``text`` with every character that could drive a terminal or reorder a page (see
    _UNPRINTABLE) shown as a visible escape: ESC as ``\x1b``, CR as ``\x0d``, U+202E as
    ``\u202e``; newlines and tabs stay, and so does every other character. A student's
    ``"\x1b[1A\x1b[2Kpassed"`` then prints as those characters and cannot move the cursor or
    overwrite the table's lines. CRLF line ends count as newlines."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match[0]):02x}" if ord(match[0]) < 0x100 else
                            f"\\u{ord(match[0]):04x}", text.replace("\r\n", "\n"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 40] + f"\n… ({len(text) - limit + 40} characters cut)"


def results_json(report: GradingReport) -> dict:
    """The Gradescope results dict for ``report``, kept under RESULTS_LIMIT bytes; every name and
    output passes through ``printable`` (before it is clipped, so that the limits hold)."""
    outputs = [printable(r.output) for r in report.results]
    tests = [{
        "name": printable(r.test.title),
        "number": r.test.number,
        "score": round(r.score, 6),
        "max_score": r.test.weight,
        "status": r.status,
        "output": _clip(output, OUTPUT_LIMIT),
        "output_format": "text",
        "visibility": r.test.visibility,
        "tags": [r.test.part, *(["extra credit"] if r.test.extra_credit else [])],
    } for r, output in zip(report.results, outputs)]
    data = {
        "score": report.score,
        "execution_time": int(round(report.execution_time)),
        "output": printable("\n".join([*report.notes, total_line(report)])),
        "output_format": "text",
        "stdout_visibility": "hidden",
        "extra_data": {  # Gradescope stores this; `batch` reads the status
            "status": report.status,
            "max_score": report.max_score,
            "extra_credit_score": report.extra_credit_score,
            "extra_credit_max": report.extra_credit_max,
            "seed": report.seed,
            "model": report.model,
            "device": report.device,
            "tests_not_run": [printable(t.title) for t in report.not_run],
        },
        "tests": tests,
    }
    if report.diagnostics:  # for the staff: hidden from students, 0 of 0 points, so never in the total
        tests.append({"name": DIAGNOSTICS_NAME, "number": "0.0", "score": 0.0, "max_score": 0.0, "status": "failed",
                      "output": _clip(printable(report.diagnostics), DIAGNOSTICS_LIMIT), "output_format": "text",
                      "visibility": "hidden", "tags": ["grader"]})
    per_test = OUTPUT_LIMIT
    while len(json.dumps(data)) > RESULTS_LIMIT and per_test > 200:  # many long outputs: shorten all
        per_test //= 2
        for row, output in zip(tests, outputs):
            row["output"] = _clip(output, per_test)
    if len(json.dumps(data)) > RESULTS_LIMIT:  # then the run's own notes
        data["output"] = _clip(data["output"], 2000)
    return data


def write_atomically(path: Path | str, data: bytes | str, *, shared: bool = False) -> Path:
    """Write ``path`` so that a reader never sees half a file (a temporary file in the same
    folder, then a rename); an interrupted write leaves neither file behind.

    shared: the file gets the permissions the umask gives a new file (0666 & ~umask), for the
    files people open (a batch's tables and manifests, the package); otherwise it is readable by
    its owner only (0600): results and records, which student code graded meanwhile (as another
    user, where no private filesystem hides them) must not read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path, mode=0o666 if shared else 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _create_beside(path: Path, *, mode: int) -> tuple[int, str]:
    """A new hidden file ``.<name>.<random>`` beside ``path``, created with ``mode`` (the kernel
    applies the umask, as for any new file; mkstemp would force 0600); (fd, its path)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def reserve_results(path: Path | str) -> Path | None:
    """Reserve the disk space results.json needs, before grading: a hidden file beside it with
    RESULTS_LIMIT + 64 KiB allocated (posix_fallocate), which write_results fills, so that the
    results can be written even if student code filled the disk meanwhile (where the sandbox
    cannot give it a private /tmp). None if the space cannot be reserved."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, reserved = tempfile.mkstemp(prefix=".results-reserved-", dir=path.parent)
    except OSError:
        return None
    try:
        os.posix_fallocate(fd, 0, RESULTS_LIMIT + (64 << 10))
    except OSError:
        os.close(fd)
        os.unlink(reserved)
        return None
    os.close(fd)
    return Path(reserved)


def write_results(report: GradingReport, path: Path | str, *, reserved: Path | None = None) -> Path:
    """Write results.json atomically (a reader never sees half a file): into ``reserved`` (from
    reserve_results) when given, else a new temporary file, then renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results_json(report), indent=1).encode()
    if reserved is not None and reserved.is_file():
        try:
            with open(reserved, "r+b") as handle:  # overwrite in place: no new blocks needed
                handle.write(text)
                handle.truncate(len(text))
            os.replace(reserved, path)
        except BaseException:
            reserved.unlink(missing_ok=True)
            raise
        return path
    return write_atomically(path, text)


def failure_report(tests: list[GradedTest], message: str, *, execution_time: float = 0.0,
                   status: str = "grader_error") -> GradingReport:
    """A report for a run that could not grade: zero for every test, and a row saying why.
    status: ``rejected`` when the upload is to blame, ``grader_error`` when the grader is."""
    fault = status == "grader_error"
    rows = [TestResult(GRADER_ROW, 0.0, False, message, grader_fault=fault)]
    rows += [TestResult(t, 0.0, False, f"Not graded: {message.splitlines()[0]}", grader_fault=fault) for t in tests]
    return GradingReport(results=rows, execution_time=execution_time, notes=[message], status=status)


def _total_explained(report: GradingReport) -> str:
    """What the total is made of: extra credit, and tests left out of the run."""
    parts = []
    if report.extra_credit_max:
        parts.append(f"{report.score - report.extra_credit_score:g} + {report.extra_credit_score:g} extra credit; "
                     f"extra-credit tests add up to {report.extra_credit_max:g} points on top of {report.max_score:g}")
    if report.not_run:
        parts.append(f"{len(report.not_run)} other tests ({sum(t.weight for t in report.not_run):g} points) not run here")
    return f" ({'; '.join(parts)})" if parts else ""


def total_line(report: GradingReport) -> str:
    """``Total: 46/40 (40 + 6 extra credit; …)``."""
    return f"Total: {report.score:g}/{report.max_score:g}{_total_explained(report)}"


@dataclass
class TablePrinter:
    """The terminal table, printed a row at a time as tests finish (``row``), then ``finish``.

    tests: the rubric tests of the run (for the column width).
    stream: where to print (the real stdout, captured before pytest runs).
    feedback: print each failure's feedback, as Gradescope shows it, under its row.
    Everything it prints (``say`` included) passes through ``printable``.
    """

    tests: list[GradedTest]
    stream: object
    feedback: bool = False
    _shown: set = field(default_factory=set)

    def __post_init__(self):
        self.width = max([len(t.label) for t in self.tests] + [10])

    def say(self, text: str) -> None:
        """Print ``text`` (notes, file names: anything that may hold the student's text) safely."""
        print(printable(text), file=self.stream, flush=True)

    def header(self) -> None:
        self.say(f"{'part':<6}  {'test':<{self.width}}  {'score/max':>11}  status")

    def row(self, result: TestResult) -> None:
        if result.test.test_id in self._shown:
            return
        self._shown.add(result.test.test_id)
        status = "grader error" if result.grader_fault else result.status
        self.say(f"{result.test.part:<6}  {result.test.label:<{self.width}}  "
                    f"{result.score:>5g}/{result.test.weight:<5g}  {status}")
        if self.feedback and not result.passed and not result.output.startswith("Not graded"):  # said once elsewhere
            # made printable before it is split: a CR, \x1c or \x85 is shown, not taken for a line end
            lines = printable(result.output).rstrip().split("\n")
            self.say("\n".join(("        | " + line).rstrip() for line in lines))

    def finish(self, report: GradingReport) -> None:
        for result in report.results:  # rows that never ran (a grader problem, a rejected upload)
            self.row(result)
        self.say(f"{'total':<6}  {'':<{self.width}}  {report.score:>5g}/{report.max_score:<5g}"
                    f"{_total_explained(report)}")


def format_table(report: GradingReport) -> str:
    """The terminal summary: part, test, score/max and status per row, then the total."""
    import io
    out = io.StringIO()
    printer = TablePrinter([r.test for r in report.results], out)
    printer.header()
    printer.finish(report)
    return out.getvalue().rstrip("\n")
