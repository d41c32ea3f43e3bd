"""The pytest plugin that turns graded checks into scored rubric rows.

Checks live in each problem's folder (``autograder/problems/<name>/test_*.py``) as ordinary
pytest tests marked with the rubric id they score: ``@pytest.mark.graded("p3a_public")``. The
plugin gives them fixtures:

- ``student``: a fresh ``ChildProcess`` for this test (the only way to run student code),
  with the test's rubric timeout as its wall-clock budget;
- ``rng``: a numpy Generator seeded from the run's seed and the test id, so each test's random
  instances are reproducible with ``--seed`` and do not depend on which other tests ran;
- ``outcome``: ``outcome.note(text)`` adds feedback to a passing row, ``outcome.fraction = x``
  gives partial credit;
- ``graded_test``: the rubric entry (``GradedTest``);
- ``run_settings``: what the run grades with beyond the rubric entry (``RunSettings``: model
  folder, device, the course's data files);
- ``clean_process``: a fresh child that never runs student code, for grader harnesses whose
  answers must be trusted (e.g. replaying a student's sampled tokens through the model); it runs
  as the grader's user, out of reach of the student's processes.

Each test's outcome is kept in the item's stash and collected into ``TestResult`` rows; a rubric
test that no check implements, or whose check could not run, still gets a row.
"""
from __future__ import annotations

import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from .compare import CheckFailed
from .results import TestResult
from .rubric import GradedTest
from .sandbox import Sandbox, StudentCodeError, ChildProcess

RESERVE_FACTOR = 3.0     # times the reference's time kept back for each later test (see _reserve)
RESERVE_DEFAULT_S = 5.0  # kept back for a later test whose reference time was not measured
MIN_LIMIT_S = 1.0
GRADED_TEST = pytest.StashKey[GradedTest]()
OUTCOME = pytest.StashKey["Outcome"]()
TIMING = pytest.StashKey["Timing"]()


@dataclass
class Timing:
    """Where one test's time went.

    seconds: wall-clock time of the check (fixtures included).
    processes: the child processes it started, whose student_seconds say how long student code
        ran in them (as the children report it).
    """

    seconds: float = 0.0
    processes: list = field(default_factory=list)

    @property
    def student_seconds(self) -> float:
        return sum(p.student_seconds for p in self.processes)

    @property
    def peak_rss_mb(self) -> float:
        return max((p.peak_rss_mb for p in self.processes), default=0.0)


@dataclass
class Outcome:
    """What a check reports beyond pass/fail.

    fraction: share of the test's points earned when it passes (partial credit), 0..1.
    notes: lines of feedback shown even when the test passes.
    """

    fraction: float = 1.0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass(frozen=True)
class RunSettings:
    """What a grading run uses beyond the rubric entries.

    model_dir: the prepared model folder children load for P6 (None: no rubric test needs one).
    device: where children run the model ("cpu", "cuda").
    data_files: the course's data files by name (``rubric.DATA_NAMES``), from the rubric's data
        section or AUTOGRADER_DATA_DIR; names not configured are absent.
    """

    model_dir: Path | None
    device: str
    data_files: dict
    reference_seconds: dict = field(default_factory=dict)
    """The reference's measured seconds per model test (test id -> seconds), from which those
    tests' time limits were derived; empty when not measured."""


class CleanProcess:
    """A child process that never imports or runs student code: it only runs grader harnesses,
    so its answers can be trusted. Only ``harness`` is offered; the harnesses run here must not
    call submission code (P6's clean harnesses also refuse to run where any was imported)."""

    def __init__(self, process: ChildProcess):
        self._process = process

    def harness(self, name: str, **kwargs):
        return self._process.harness(name, **kwargs)


class GradingPlugin:
    """Scores one submission: rubric in, one TestResult per rubric test out."""

    def __init__(self, *, tests: list[GradedTest], sandbox: Sandbox, seed: int, data_files: dict | None = None,
                 reference_seconds: dict | None = None, time_budget_s: float | None = None,
                 not_graded: dict[str, str] | None = None, hints: dict[str, str] | None = None, on_result=None,
                 left_out: set[str] | frozenset = frozenset()):
        """tests: the rubric tests of this run.
        time_budget_s: wall-clock seconds for the whole run; a test that starts with less left
            than its own limit gets what is left (so a run of slow tests still writes every row).
        left_out: ids of rubric tests this run leaves out on purpose (``--part``): their checks
            are skipped without complaint.
        not_graded: test id -> why the grader cannot grade it in this run (e.g. no model for
            P6); those checks do not run, and their rows say why (a grader fault, no points).
        hints: a problem file name -> a line added to the feedback of tests that failed because
            that file is missing ("did you mean P3_param_counts.py?").
        on_result: called with each TestResult as soon as its test finishes (live output).
        """
        self.tests = {t.test_id: t for t in tests}
        self.sandbox = sandbox
        self.seed = seed
        self.settings = RunSettings(sandbox.model_dir, sandbox.device, dict(data_files or {}),
                                    dict(reference_seconds or {}))
        self.not_graded = dict(not_graded or {})
        self.hints = dict(hints or {})
        self.on_result = on_result
        self.left_out = set(left_out)
        self.results: dict[str, TestResult] = {}
        self.problems: list[str] = []  # grader configuration problems found at collection
        self.diagnostics: list[str] = []  # the grader's own tracebacks, for the staff only (a hidden row)
        self.deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
        self.run_order: list[GradedTest] = []  # the tests to run, in order (set at collection)
        self.time_budget_s = time_budget_s

    # -- collection ------------------------------------------------------------------------
    def pytest_configure(self, config):
        config.addinivalue_line("markers", "graded(test_id): the rubric test this check scores")

    def pytest_collection_modifyitems(self, session, config, items):
        kept, seen = [], {}
        for item in items:
            marker = item.get_closest_marker("graded")
            test_id = marker.args[0] if marker and marker.args else None
            if test_id in self.left_out:
                continue
            if test_id not in self.tests:
                self.problems.append(f"{item.nodeid}: {'no @graded marker' if test_id is None else f'{test_id!r} is not in the rubric'}")
                continue
            if test_id in self.not_graded:
                continue
            if test_id in seen:
                self.problems.append(f"{item.nodeid}: {test_id!r} is already scored by {seen[test_id]}")
                continue
            seen[test_id] = item.nodeid
            item.stash[GRADED_TEST] = self.tests[test_id]
            item.stash[OUTCOME] = Outcome()
            item.stash[TIMING] = Timing()
            kept.append(item)
        order = {test_id: i for i, test_id in enumerate(self.tests)}
        items[:] = sorted(kept, key=lambda item: order[item.stash[GRADED_TEST].test_id])
        self.run_order = [item.stash[GRADED_TEST] for item in items]

    def pytest_collection_finish(self, session):
        # The fork server of the first test started while pytest collected; wait for it here, so
        # that its start-up is not counted in that test's time.
        if self.sandbox.launcher is not None and session.items:
            first = session.items[0].stash.get(GRADED_TEST, None)
            try:
                self.sandbox.launcher_for(model=first is None or first.needs_model).wait_ready()
            except Exception:  # each test that needs a child then fails with the launcher's error
                pass

    def pytest_collectreport(self, report):
        if report.failed:
            self.problems.append(f"{report.nodeid}: could not be loaded (the staff diagnostics say why)")
            self.diagnostics.append(f"{report.nodeid} could not be loaded:\n{report.longrepr}")

    # -- fixtures --------------------------------------------------------------------------
    @pytest.fixture
    def graded_test(self, request) -> GradedTest:
        return request.node.stash[GRADED_TEST]

    @pytest.fixture
    def outcome(self, request) -> Outcome:
        return request.node.stash[OUTCOME]

    @pytest.fixture
    def rng(self, graded_test) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(graded_test.test_id.encode())])

    def _reserve(self, test: GradedTest) -> float:
        """Seconds kept back for the tests after ``test``: each may need RESERVE_FACTOR times the
        reference's measured time, or RESERVE_DEFAULT_S where none was measured (never more than
        its own limit). So a submission that loops forever in one part cannot spend the time the
        parts after it need."""
        later = self.run_order[self.run_order.index(test) + 1:] if test in self.run_order else []
        return sum(min(t.timeout, RESERVE_FACTOR * self.settings.reference_seconds[t.test_id]
                       if t.test_id in self.settings.reference_seconds else RESERVE_DEFAULT_S) for t in later)

    def _time_limit(self, test: GradedTest) -> tuple[float, str]:
        """The test's time limit now, and why it is what it is (for timeout messages)."""
        limit, why = test.timeout, ""
        reference = self.settings.reference_seconds.get(test.test_id)
        if reference is not None:
            why = f"the reference solution takes {reference:.3g} s here"
        if self.deadline is not None:
            left = self.deadline - time.monotonic() - self._reserve(test)
            if left < limit:
                limit = max(left, MIN_LIMIT_S)
                why = (f"{why}; only {limit:.0f} s could be spared of the {self.time_budget_s:g} s the whole "
                       f"grading may take" if why else
                       f"only {limit:.0f} s could be spared of the {self.time_budget_s:g} s the whole grading may take")
        return limit, why

    @pytest.fixture
    def student(self, request, graded_test):
        limit, why = self._time_limit(graded_test)
        process = self.sandbox.process(time_limit_s=limit, label=graded_test.test_id, limit_note=why,
                                       model=graded_test.needs_model)
        request.node.stash[TIMING].processes.append(process)
        try:
            yield process
        finally:
            process.close()

    @pytest.fixture(scope="session")
    def run_settings(self) -> RunSettings:
        return self.settings

    @pytest.fixture
    def clean_process(self, graded_test):
        limit, why = self._time_limit(graded_test)
        process = self.sandbox.process(time_limit_s=limit, label=f"{graded_test.test_id}-clean",
                                       runs_student_code=False, limit_note=why)
        try:
            yield CleanProcess(process)
        finally:
            process.close()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        start = time.monotonic()
        try:
            return (yield)
        finally:
            timing = item.stash.get(TIMING, None)
            if timing is not None:
                timing.seconds = time.monotonic() - start
                result = self.results.get(item.stash[GRADED_TEST].test_id)
                if result is not None:
                    result.seconds, result.student_seconds = timing.seconds, timing.student_seconds
                    result.peak_rss_mb = timing.peak_rss_mb

    # -- scoring ---------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        test = item.stash.get(GRADED_TEST, None)
        if test is None or report.when == "teardown" or (report.when == "setup" and report.passed):
            return report
        outcome = item.stash[OUTCOME]
        if report.passed:
            fraction = min(max(float(outcome.fraction), 0.0), 1.0)
            text = "\n".join(outcome.notes) or "Correct."
            result = TestResult(test, round(test.weight * fraction, 6), fraction == 1.0, text)
        else:
            text, fault = self._failure_text(call.excinfo, outcome, test)
            result = TestResult(test, 0.0, False, text, grader_fault=fault)
        self.results[test.test_id] = result
        if self.on_result is not None:
            self.on_result(result)
        return report

    def _failure_text(self, excinfo, outcome: Outcome, test: GradedTest) -> tuple[str, bool]:
        """The feedback for a failed check, and whether the grader (not the student) is to blame.
        A grader fault gets a plain sentence; its traceback goes to ``diagnostics`` (staff only)."""
        if excinfo is None:
            return "The check did not run.", True
        error, fault = excinfo.value, False
        if isinstance(error, CheckFailed):  # the student's wrong answer, whatever its hint's code did
            text = str(error)
            self.diagnostics += [f"{test.test_id}: {note}" for note in error.staff_notes]
        elif isinstance(error, StudentCodeError) and error.kind != "internal":
            text = error.feedback()
            if error.kind == "missing_file":
                text = "\n".join([text, *(hint for name, hint in self.hints.items() if f"submission/{name} " in text)])
        elif isinstance(error, pytest.skip.Exception):
            text = f"Not graded here: {error.msg}"
        else:  # a bug in the grader, not in the submission: say so plainly; the details are the staff's
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            if isinstance(error, StudentCodeError):  # the clean side of a child failed: its own traceback
                detail = f"{error.message}\n{error.traceback}\n{detail}"
            self.diagnostics.append(f"{test.test_id}: internal grader error\n{detail}")
            text = ("Internal grader error (not a fault of your submission; please tell the course staff, who "
                    "can see what went wrong).")
            fault = True
        return "\n".join([*outcome.notes, text]), fault

    def rows(self) -> list[TestResult]:
        """One result per rubric test, in rubric order; tests that did not run get zero and why."""
        why = "; ".join(self.problems) or "no check implements this rubric test"
        rows = []
        for t in self.tests.values():
            if t.test_id in self.not_graded:
                rows.append(TestResult(t, 0.0, False, f"Not graded: {self.not_graded[t.test_id]}", grader_fault=True))
            else:
                rows.append(self.results.get(t.test_id) or
                            TestResult(t, 0.0, False, f"Not graded (grader configuration): {why}", grader_fault=True))
        return rows
