"""Grading whole submissions: the reference, the template, broken uploads, both layouts, the
CLI and the Gradescope entry point."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.rubric import load_rubric
from conftest import REFERENCE, REPO, TEMPLATE, make_submission, rubric_of_parts
from gradescope_schema import validate_results

TITLES = [t.title for t in load_rubric()]
P6_PARTS = ("p6a", "p6b", "p6c", "p6d", "p6e", "p6f", "p6g", "p6h")


@pytest.fixture(scope="module")
def p3_rubric(tmp_path_factory):
    """Engine behaviour (layouts, broken uploads, seeds, CLI) is shown on P3 alone, which grades
    in about a second; the whole rubric is graded for the reference, the template and Gradescope."""
    folder = tmp_path_factory.mktemp("rubric-p3")
    return rubric_of_parts(folder / "rubric.yaml", "p3a", "p3b", "p3c")


P3_TITLES = [t for t in TITLES if t.startswith("[p3")]


def test_reference_gets_full_marks(shared_gradings):
    graded = shared_gradings.grading()  # the reference on the whole rubric, shared with the next test
    validate_results(graded.json, rubric_titles=TITLES)
    assert graded.failed() == set(), {t: graded.output(t) for t in graded.failed()}
    extra_credit = sum(t.weight for t in load_rubric() if t.extra_credit)  # P6's p6g and p6h
    assert graded.json["score"] == graded.report.max_score + extra_credit > 0


def test_reference_gets_full_marks_on_p6(shared_gradings):
    """P6 as the reference grades on the tiny model (CPU): each row passes and says how it was graded."""
    graded = shared_gradings.grading()  # the same grading as the test above
    p6 = {t for t, row in graded.rows.items() if row.test.part in P6_PARTS}  # P6's rows, on the tiny model
    assert len(p6) == 18 and p6 <= set(graded.rows) - graded.failed(), {t: graded.output(t) for t in p6 & graded.failed()}
    assert "needs the course checkpoint" in graded.output("p6e_classification")  # says how p6e was graded
    assert "Agrawal" in graded.output("p6c_distribution_public")  # states the test and its false-fail bound
    assert "tiny" in graded.report.model


@pytest.mark.slow
def test_template_gets_zero_and_says_not_implemented(grade_submission):
    graded = grade_submission(TEMPLATE)
    validate_results(graded.json, rubric_titles=TITLES)
    assert graded.json["score"] == 0
    for row in graded.report.results:
        assert "not implemented yet" in row.output, row.output
        assert "Internal grader error" not in row.output


@pytest.mark.parametrize("files, drop, expected", [
    ({"p3_param_counts.py": "def full_joint(k):\n    return (\n"}, (), "SyntaxError"),
    ({"p3_param_counts.py": "import numpy\nraise RuntimeError('boom at import')\n"}, (), "boom at import"),
    ({"p3_param_counts.py": "import sys\nsys.exit(3)\n"}, (), "SystemExit"),
    ({"p3_param_counts.py": "import os\nos._exit(0)\n"}, (), "exited with status 0"),
    ({"p3_param_counts.py": "import this_module_does_not_exist\n"}, (), "ModuleNotFoundError"),
    ({}, ("p3_param_counts.py",), "submission/p3_param_counts.py is not in your upload"),
])
def test_broken_submission_gets_a_complete_results_file(tmp_path, grade_submission, p3_rubric, files, drop, expected):
    graded = grade_submission(make_submission(tmp_path / "sub", files, drop=drop), rubric=p3_rubric)
    validate_results(graded.json, rubric_titles=P3_TITLES)
    p3 = [t for t in graded.rows if t.startswith("p3")]
    for test_id in p3:
        assert graded.score(test_id) == 0
        assert expected in graded.output(test_id), graded.output(test_id)
    assert all(graded.rows[t].passed for t in graded.rows if t not in p3)


def test_upload_without_python_files_gets_rows_for_every_test(tmp_path, grade_submission, p3_rubric):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("forgot the code")
    graded = grade_submission(tmp_path / "empty")
    validate_results(graded.json, rubric_titles=TITLES)
    assert graded.json["score"] == 0
    assert "no Python files found" in graded.json["tests"][0]["output"]


@pytest.mark.parametrize("layout", ["loose", "nested"])
def test_other_layouts_grade_like_the_package(tmp_path, grade_submission, p3_rubric, layout):
    if layout == "loose":
        folder = make_submission(tmp_path / "loose", layout="loose")
    else:
        folder = make_submission(tmp_path / "nested" / "src")
        folder = folder.parent
    graded = grade_submission(folder, rubric=p3_rubric)
    assert graded.failed() == set()


def test_seed_is_printed_and_reproducible(tmp_path, grade_submission, p3_rubric):
    first = grade_submission(REFERENCE, seed=None, rubric=p3_rubric)
    again = grade_submission(REFERENCE, seed=None, rubric=p3_rubric)
    assert first.report.seed == again.report.seed
    assert f"Seed {first.report.seed}" in first.json["output"]
    changed = grade_submission(make_submission(tmp_path / "s", {"extra.py": "# a comment\n"}), seed=None,
                               rubric=p3_rubric)
    assert changed.report.seed != first.report.seed


def test_grader_never_imports_student_code(tmp_path, grade_submission, p3_rubric):
    marker = tmp_path / "imported-in-grader"
    graded = grade_submission(make_submission(tmp_path / "s", {"p3_param_counts.py": f"""
        import os, sys
        if 'pytest' in sys.modules or 'autograder' in sys.modules:
            open({str(marker)!r}, 'w').close()
        from math import prod
        def full_joint(k): return prod(k) - 1
        def independent(k): return sum(x - 1 for x in k)
        def markov(k, m):
            return prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k)))
    """}), rubric=p3_rubric)
    assert graded.failed() == set()
    assert not marker.exists()
    assert "submission" not in sys.modules and not any(m.startswith("submission.") for m in sys.modules)


def test_internal_grader_error_still_gives_a_row_per_test(tmp_path, grade_submission, p3_rubric):
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_broken.py").write_text("import pytest\n@pytest.mark.graded('p3a_public')\n"
                                           "def test_x(student):\n    raise KeyError('grader bug')\n")
    graded = grade_submission(REFERENCE, checks_dir=checks, rubric=p3_rubric)
    validate_results(graded.json, rubric_titles=P3_TITLES)
    assert "Internal grader error" in graded.output("p3a_public")
    assert "no check implements" in graded.output("p3b_public")


def test_invalid_rubric_still_writes_valid_results(tmp_path, grade_submission):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("tests:\n  p3a_public: {part: p3a, name: x, weight: lots}\n")
    graded = grade_submission(REFERENCE, rubric=rubric)
    validate_results(graded.json)
    assert "tests.p3a_public.weight" in graded.json["tests"][0]["output"]


def test_cli_grades_and_prints_the_table(tmp_path, p3_rubric):
    results = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(REFERENCE), "--results", str(results),
                           "--seed", "7", "--rubric", str(p3_rubric)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout and "[p3a]" not in done.stdout and "p3a" in done.stdout
    data = json.loads(results.read_text())
    validate_results(data, rubric_titles=P3_TITLES)
    assert "Seed 7" in data["output"]


def test_a_checkout_reached_through_a_symlink_grades_as_usual(tmp_path, p3_rubric):
    """The interpreter called by a path through a symlink (a /home that is a link, a checkout
    linked into place): the children's private filesystem holds the resolved paths only, so the
    fork server must be started by them, or every test is a grader error."""
    try:
        venv_python = Path(sys.executable).relative_to(REPO)
    except ValueError:
        pytest.skip("the tests do not run with the checkout's own .venv")
    link = tmp_path / "linked-checkout"
    link.symlink_to(REPO, target_is_directory=True)
    results = tmp_path / "r.json"
    done = subprocess.run([str(link / venv_python), "-m", "autograder", "grade", str(REFERENCE), "--results",
                           str(results), "--rubric", str(p3_rubric)], cwd=link, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(results.read_text())
    assert data["score"] == sum(t["max_score"] for t in data["tests"] if t.get("max_score")), data["output"]
    assert "could read" not in done.stdout + done.stderr


def test_a_models_folder_reached_through_a_symlink_serves_the_model(tmp_path):
    """AUTOGRADER_MODELS (or models/) a symlink, as on a machine whose models live on another disk:
    the children load the model by its resolved path, the only one their private filesystem has."""
    from autograder.models import models_root
    link = tmp_path / "linked-models"
    link.symlink_to(models_root().resolve(), target_is_directory=True)
    results = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(REFERENCE), "--results", str(results),
                           "--part", "p6d", "--model", "tiny"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "AUTOGRADER_MODELS": str(link)})
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(results.read_text())
    assert data["score"] == 5 and "linked-models" in data["output"], data["output"]


def test_cli_exits_zero_for_a_failing_submission(tmp_path, p3_rubric):
    results = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(TEMPLATE), "--results", str(results),
                           "--rubric", str(p3_rubric)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(results.read_text())["score"] == 0


def _gradescope_tree(root, submission_source):
    (root / "results").mkdir(parents=True)
    shutil.copytree(submission_source, root / "submission")
    return root


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="needs setup.sh's .venv")
def test_run_autograder_on_a_gradescope_tree(tmp_path):
    root = _gradescope_tree(tmp_path / "autograder", REFERENCE / "submission")
    done = subprocess.run(["bash", str(REPO / "run_autograder")], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    validate_results(data, rubric_titles=TITLES)
    assert data["score"] == sum(t.weight for t in load_rubric())  # full marks, extra credit included


def test_run_autograder_without_a_grader_still_writes_results(tmp_path):
    root = _gradescope_tree(tmp_path / "autograder", TEMPLATE / "submission")
    script = tmp_path / "copy" / "run_autograder"
    script.parent.mkdir()
    shutil.copy(REPO / "run_autograder", script)  # no autograder/ beside it, no source/ in root
    done = subprocess.run(["bash", str(script)], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    data = json.loads((root / "results" / "results.json").read_text())
    validate_results(data)
    assert data["score"] == 0 and "could not grade" in data["tests"][0]["name"]
    assert "exited with status" in data["tests"][0]["output"]


def test_a_rubric_in_a_shared_folder_leaves_that_folder_alone(tmp_path, grade_submission, p3_rubric):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)
    rubric = shared / "rubric.yaml"
    shutil.copyfile(p3_rubric, rubric)
    graded = grade_submission(REFERENCE, rubric=rubric)
    assert graded.failed() == set()
    assert shared.stat().st_mode & 0o7777 == 0o1777


@pytest.mark.skipif(os.geteuid() != 0, reason="only root changes permissions")
def test_grading_changes_no_permissions_of_the_checkout(grade_submission, p3_rubric):
    """Protecting the grader's folders is set-up's job (prepare-sandbox), never a side effect of grading."""
    folder = REPO / "tests"
    mode = folder.stat().st_mode & 0o7777
    try:
        folder.chmod(0o755)
        graded = grade_submission(REFERENCE, rubric=p3_rubric)
        assert graded.failed() == set()
        assert folder.stat().st_mode & 0o7777 == 0o755
    finally:
        folder.chmod(mode)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox set-up runs as root")
def test_sandbox_set_up_succeeds_while_gradings_run(tmp_path, p3_rubric):
    """prepare-sandbox's self-check takes a slot of its own: gradings running meanwhile (whose
    sweeps kill their own slot's processes) never disturb it."""
    slow = make_submission(tmp_path / "slow", {"p3_param_counts.py": (REFERENCE / "submission" / "p3_param_counts.py")
                                               .read_text() + "\nimport time\ntime.sleep(1)\n"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    gradings = [subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(slow), "--rubric", str(p3_rubric),
                                  "--results", str(tmp_path / f"results-{i}.json")], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    try:
        for _ in range(3):
            done = subprocess.run([sys.executable, "-m", "autograder", "prepare-sandbox"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 and "student code runs as" in done.stdout, done.stderr[-2000:]
    finally:
        for grading in gradings:
            grading.wait(timeout=300)
    assert all(grading.returncode == 0 for grading in gradings)


ESCAPES = "\x1b[1A\x1b[2K\rFOUND\x08\x07\x9b2J\u202e"  # cursor up, erase line, CR, backspace, bell, C1 CSI, bidi
RAW_CONTROLS = ("\x1b", "\r", "\x08", "\x07", "\x9b", "\u202e")


def test_student_text_never_reaches_the_terminal_or_results_raw(tmp_path, p3_rubric):
    """A student's exception message, returned string and file name holding terminal
    escapes (ESC, CR, backspace, bell, a C1 CSI, a bidi override) could move the cursor and rewrite
    the table staff read ("passed" where it failed): `grade --feedback` prints them, and results.json
    holds them, only as visible escapes (results.printable)."""
    folder = make_submission(tmp_path / "upload", {
        "p3_param_counts.py": f"""
            from math import prod
            def full_joint(k):
                raise RuntimeError({ESCAPES!r} + " passed")
            def independent(k): return {ESCAPES!r}
            def markov(k, m): return prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k)))
            """,
        "notes\x1b[2K\r.py": "X = 1\n"})
    results = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(folder), "--results", str(results),
                           "--rubric", str(p3_rubric), "--feedback"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(results.read_text())
    texts = {"stdout": done.stdout, "results.json output": data["output"],
             **{row["name"]: row["output"] for row in data["tests"]}}
    for where, text in texts.items():
        assert not any(c in text for c in RAW_CONTROLS), (where, text)
    shown = r"\x1b[1A\x1b[2K\x0dFOUND\x08\x07\x9b2J\u202e"
    feedback = {row["name"].split()[0]: row["output"] for row in data["tests"]}
    assert f"{shown} passed" in feedback["[p3a]"]
    assert repr(ESCAPES) in feedback["[p3b]"]  # the returned str, as its repr shows it (already escaped)
    assert f"RuntimeError: {shown} passed" in done.stdout  # one line, as in results.json
    assert r"notes\x1b[2K\x0d.py" in data["output"] and r"notes\x1b[2K\x0d.py" in done.stdout
    assert sum(row["score"] for row in data["tests"] if row["name"].startswith("[p3c]")) > 0  # the rest is graded
