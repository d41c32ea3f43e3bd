"""The grading plugin (autograder/grading.py) on its own, through pytest's ``pytester``: a tiny
check file of our own, run by pytest with the plugin, becomes one scored row per rubric test
(passed, failed, a grader error, skipped, partial credit, student code that raised, a rubric
test no check implements), with the rubric's weights and the feedback each row must carry."""
from __future__ import annotations

import textwrap

import pytest

from autograder.grading import GradingPlugin
from autograder.rubric import load_rubric
from autograder.sandbox import Sandbox
from conftest import make_submission

RUBRIC = """
defaults: {visibility: visible, timeout: 20}
tests:
  p3a_pass: {part: p3a, name: passes, weight: 2}
  p3a_fail: {part: p3a, name: a wrong answer, weight: 1}
  p3a_error: {part: p3a, name: a bug in the check, weight: 1.5}
  p3a_skip: {part: p3a, name: skipped, weight: 1}
  p3b_partial: {part: p3b, name: half right, weight: 3}
  p3b_noted: {part: p3b, name: passes with a note, weight: 1, visibility: hidden}
  p3b_student_raises: {part: p3b, name: student code raises, weight: 1}
  p3c_nobody: {part: p3c, name: no check implements it, weight: 4}
"""

STUDENT = """
def double(x):
    return 2 * x
def broken(x):
    return {}["no such key"]
"""

CHECKS = """
import pytest
from autograder.compare import CheckFailed

graded = pytest.mark.graded

@graded("p3a_pass")
def test_pass(student):
    assert student.call("p3_param_counts", "double", 21) == 42

@graded("p3a_fail")
def test_fail(student):
    got = student.call("p3_param_counts", "double", 2)
    if got != 5:
        raise CheckFailed(f"double(2) returned {got}, expected 5")

@graded("p3a_error")
def test_error(student):
    raise KeyError("a bug in the check")

@graded("p3a_skip")
def test_skip():
    pytest.skip("needs a GPU")

@graded("p3b_partial")
def test_partial(outcome):
    outcome.fraction = 0.5
    outcome.note("1 of 2 instances right")

@graded("p3b_noted")
def test_noted(outcome, rng, graded_test):
    assert graded_test.test_id == "p3b_noted" and 0 <= rng.random() < 1
    outcome.note("right, and here is why")

@graded("p3b_student_raises")
def test_student_raises(student):
    student.call("p3_param_counts", "broken", 1)
"""


@pytest.fixture
def graded_rows(pytester):
    """Run ``checks`` (a check file's source) with the plugin on RUBRIC against STUDENT's upload:
    returns (rows by test id, pytest's recorded outcomes, the rows seen live, the plugin)."""
    def run(checks: str = CHECKS):
        upload = make_submission(pytester.path / "upload", {"p3_param_counts.py": STUDENT}, base=None)
        rubric = pytester.path / "rubric.yaml"
        rubric.write_text(textwrap.dedent(RUBRIC).lstrip())
        pytester.makepyfile(test_checks=checks)
        live = []
        with Sandbox(upload) as sandbox:
            plugin = GradingPlugin(tests=load_rubric(rubric), sandbox=sandbox, seed=1, on_result=live.append)
            recorded = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:randomly", plugins=[plugin])
        return {row.test.test_id: row for row in plugin.rows()}, recorded, live, plugin
    return run


RUBRIC_IDS = ["p3a_pass", "p3a_fail", "p3a_error", "p3a_skip", "p3b_partial", "p3b_noted", "p3b_student_raises",
              "p3c_nobody"]


def test_each_check_becomes_a_scored_row_with_its_weight_and_feedback(graded_rows):
    rows, recorded, live, plugin = graded_rows()
    assert list(rows) == RUBRIC_IDS  # one row per rubric test, in rubric order
    assert {t: (r.score, r.passed) for t, r in rows.items()} == {
        "p3a_pass": (2.0, True), "p3a_fail": (0.0, False), "p3a_error": (0.0, False), "p3a_skip": (0.0, False),
        "p3b_partial": (1.5, False), "p3b_noted": (1.0, True), "p3b_student_raises": (0.0, False),
        "p3c_nobody": (0.0, False)}
    assert [r.test.weight for r in rows.values()] == [2, 1, 1.5, 1, 3, 1, 1, 4]
    assert rows["p3a_pass"].output == "Correct."
    assert rows["p3a_fail"].output == "double(2) returned 4, expected 5"  # the check's own words, nothing added
    assert rows["p3a_error"].output.startswith("Internal grader error (not a fault of your submission")
    # the student sees a plain sentence; the traceback is the staff's (the hidden diagnostics row)
    assert "KeyError" not in rows["p3a_error"].output
    assert any("p3a_error: internal grader error" in d and "KeyError: 'a bug in the check'" in d
               for d in plugin.diagnostics), plugin.diagnostics
    assert rows["p3a_skip"].output == "Not graded here: needs a GPU"
    assert rows["p3b_partial"].output == "1 of 2 instances right"
    assert rows["p3b_noted"].output == "right, and here is why" and rows["p3b_noted"].test.visibility == "hidden"
    assert "KeyError" in rows["p3b_student_raises"].output and "broken" in rows["p3b_student_raises"].output
    assert "no check implements this rubric test" in rows["p3c_nobody"].output
    # whose fault: the grader's for its own bug and for a test nobody implements, never for the student's error
    assert {t for t, r in rows.items() if r.grader_fault} == {"p3a_error", "p3c_nobody"}
    # pytest saw the same outcomes, and every row that ran was reported live as it finished
    passed, skipped, failed = recorded.listoutcomes()
    assert (len(passed), len(skipped), len(failed)) == (3, 1, 3)
    assert [r.test.test_id for r in live] == [t for t in rows if t != "p3c_nobody"]
    assert plugin.problems == []


def test_checks_the_rubric_does_not_know_are_named_not_scored(graded_rows):
    checks = CHECKS + textwrap.dedent("""
        @graded("p9_unknown")
        def test_unknown():
            pass

        def test_unmarked():
            pass

        @graded("p3a_pass")
        def test_twice():
            pass
    """)
    rows, recorded, _, plugin = graded_rows(checks)
    assert rows["p3a_pass"].score == 2.0  # the first check of p3a_pass scores it, the second is refused
    assert len(plugin.problems) == 3, plugin.problems
    assert any("'p9_unknown' is not in the rubric" in p for p in plugin.problems)
    assert any("test_unmarked: no @graded marker" in p for p in plugin.problems)
    assert any("'p3a_pass' is already scored by" in p for p in plugin.problems)
    assert "p9_unknown" not in rows and len(rows) == 8
    assert sum(len(group) for group in recorded.listoutcomes()) == 7  # the refused checks never ran


def test_a_check_file_that_cannot_load_still_gives_every_row(graded_rows):
    rows, _, _, plugin = graded_rows("import this_module_does_not_exist\n")
    assert len(rows) == 8 and all(row.score == 0 and row.grader_fault for row in rows.values())
    # each row says plainly that the grader could not load its check; the import error is the staff's
    assert all(row.output.startswith("Not graded (grader configuration)") and "could not be loaded" in row.output
               and "this_module_does_not_exist" not in row.output for row in rows.values())
    assert any("could not be loaded" in p for p in plugin.problems), plugin.problems
    assert any("could not be loaded" in d and "this_module_does_not_exist" in d for d in plugin.diagnostics)



HINT_RAISES = """
import pytest
from autograder.compare import BestEffortHint, expect_exact_int

@pytest.mark.graded("p3a_fail")
def test_fail(student):
    got = student.call("p3_param_counts", "double", 2)
    def hint():
        raise RuntimeError("a bug in the hint")
    expect_exact_int(got, 5, call="double(2)", hint=BestEffortHint(hint, generic="double means twice"))
"""


def test_a_hint_that_raises_is_the_students_wrong_answer_and_the_staffs_traceback(graded_rows):
    """Hint code is best-effort (compare.BestEffortHint): when it raises on the student's value, the
    row is still the student's wrong answer with the generic hint, not an internal grader error,
    and the hint's traceback goes to the staff's diagnostics."""
    rows, _, _, plugin = graded_rows(HINT_RAISES)
    row = rows["p3a_fail"]
    assert (row.score, row.passed, row.grader_fault) == (0.0, False, False)
    assert row.output == "double(2) returned 4\nexpected 5\nHint: double means twice", row.output
    assert any(d.startswith("p3a_fail: a hint raised") and "RuntimeError: a bug in the hint" in d
               for d in plugin.diagnostics), plugin.diagnostics
