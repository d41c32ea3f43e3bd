"""The problem registry: a problem added as one folder and one rubric entry is graded end to end,
with no engine file touched; and grading never imports SymPy in the grader's process."""
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from autograder.registry import builtin_problems
from autograder.rubric import DEFAULT_RUBRIC, load_rubric
from gradescope_schema import validate_results

REPO = Path(__file__).resolve().parents[1]

TOY_PROBLEM = {
    "__init__.py": '''
        """A toy extra problem, P7, kept outside autograder/problems as a course would keep its own."""
        from autograder.registry import Problem

        PROBLEM = Problem(name="p7", title="A toy extra problem", files=("p7_toy.py",), parts=("p7",),
                          functions={"p7_toy.py": ("double",)}, harness_modules=("child",))
    ''',
    "child.py": '''
        """P7 on the child's side: a harness calling the student's double() on many inputs."""
        from ...child.harness import harness, real_or_none


        @harness("p7_double_many")
        def p7_double_many(child, *, xs):
            double = child.function("p7_toy", "double")
            out = []
            for x in xs:
                value = real_or_none(child.invoke(double, (float(x),), {}, label=f"double({x!r})"))
                out.append({"value": value} if value is not None else {"unsupported": {"got": "?", "type": "?"}})
            return out
    ''',
    "test_p7_toy.py": '''
        """P7 checks: double(x) is 2x, called directly and through the problem's own harness."""
        import pytest

        from autograder.compare import check_each, expect_close


        @pytest.mark.graded("p7_double")
        def test_double(student, outcome):
            def judge(x):
                expect_close(student.call("p7_toy", "double", x), 2 * x, rtol=1e-12, atol=0.0, call=f"double({x})")
            outcome.note(f"All {check_each([0.0, 1.5, -3.0], judge)} answers right.")


        @pytest.mark.graded("p7_harness")
        def test_double_through_the_harness(student, rng):
            xs = [float(x) for x in rng.normal(size=5)]
            for x, entry in zip(xs, student.harness("p7_double_many", xs=xs)):
                expect_close(student.reply(entry, what=f"double({x})").unwrap(), 2 * x, rtol=1e-12, atol=0.0,
                             call=f"double({x})")
    ''',
}


def engine_digest() -> str:
    """A digest of every file of the engine and the built-in problems."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "autograder").rglob("*.py")) + [DEFAULT_RUBRIC]:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def toy_course(tmp_path: Path) -> Path:
    """A course folder: the toy problem's folder, and a rubric of P3a and P7 that names it."""
    folder = tmp_path / "course" / "p7"
    folder.mkdir(parents=True)
    for name, text in TOY_PROBLEM.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    data["tests"] = {k: v for k, v in data["tests"].items() if v["part"] == "p3a"}
    data["problems"] = ["p7"]
    data["tests"]["p7_double"] = {"part": "p7", "name": "double(x), fixed inputs", "weight": 1.0}
    data["tests"]["p7_harness"] = {"part": "p7", "name": "double(x) through the harness", "weight": 1.0}
    rubric = tmp_path / "course" / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data, sort_keys=False))
    return rubric


def test_a_problem_added_as_one_folder_is_graded_end_to_end(tmp_path, grade_submission):
    before = engine_digest()
    rubric = toy_course(tmp_path)
    assert "p7" not in {p.name for p in builtin_problems()}
    right = tmp_path / "right" / "submission"
    right.mkdir(parents=True)
    (right / "p7_toy.py").write_text("def double(x):\n    return 2 * x\n")
    (right / "p3_param_counts.py").write_text((REPO / "reference/submission/p3_param_counts.py").read_text())
    graded = grade_submission(right.parent, rubric=rubric)
    validate_results(graded.json)
    assert graded.failed() == set(), graded.json
    assert graded.score("p7_double") == 1.0 and graded.score("p7_harness") == 1.0
    assert any(t["name"].startswith("[p7]") for t in graded.json["tests"])

    wrong = tmp_path / "wrong" / "submission"
    wrong.mkdir(parents=True)
    (wrong / "p7_toy.py").write_text("def double(x):\n    return x + 2 if x > 1 else 2 * x\n")
    graded = grade_submission(wrong.parent, rubric=rubric)
    assert graded.failed() >= {"p7_double", "p7_harness"}
    assert "1 of 3 answers wrong. The first:" in graded.output("p7_double")
    assert "double(1.5)" in graded.output("p7_double")
    assert engine_digest() == before  # adding the problem touched no engine file


def test_a_rubric_part_no_problem_declares_is_refused(tmp_path):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("tests:\n  p7_x: {part: p7, name: x, weight: 1}\n")
    try:
        load_rubric(rubric)
    except ValueError as error:
        assert "tests.p7_x.part: no problem declares part 'p7'" in str(error)
    else:
        raise AssertionError("a part no problem declares was accepted")


def test_grading_never_imports_sympy_in_the_grader():
    """The checks use the numeric P4/P5 yardsticks in their problems' folders; SymPy stays with
    reference/closed_forms.py and the tests. Every problem's checks are collected (P6's without
    the model: p6a, p6b), and P4 and P5's run."""
    script = ("import sys\nfrom autograder.runner import grade\n"
              "report = grade('reference', parts=['p1', 'p2', 'p3', 'p4', 'p5', 'p6a', 'p6b'])\n"
              "assert report.status == 'graded' and all(r.passed for r in report.results), report.results\n"
              "print('sympy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_a_grader_fault_shows_students_a_sentence_and_staff_a_hidden_row(tmp_path, grade_submission):
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_broken.py").write_text("import pytest\n@pytest.mark.graded('p3a_public')\n"
                                           "def test_x(student):\n    raise KeyError('grader bug')\n")
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("tests:\n  p3a_public: {part: p3a, name: x, weight: 1}\n")
    graded = grade_submission(REPO / "reference", checks_dir=checks, rubric=rubric)
    validate_results(graded.json)
    student_row = next(t for t in graded.json["tests"] if t["name"].startswith("[p3a]"))
    assert "Internal grader error" in student_row["output"] and "KeyError" not in student_row["output"]
    staff = [t for t in graded.json["tests"] if t["visibility"] == "hidden" and t["name"].startswith("[staff]")]
    assert len(staff) == 1 and staff[0]["max_score"] == 0 and staff[0]["score"] == 0
    assert "KeyError: 'grader bug'" in staff[0]["output"] and "pytest's log" in staff[0]["output"]
    assert graded.json["score"] == 0 and graded.report.max_score == 1
