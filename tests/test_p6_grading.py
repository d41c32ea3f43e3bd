"""Grading P6 end to end on the tiny model (CPU): a submission written for the course's original
starter code, the reference cache (built once, reused, never rebuilt or recomputed while
grading, torch never imported by the grader), and the plots command. The reference's own P6
rows are checked in test_end_to_end.py, on the session's shared grading of the reference."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import COURSE_DATA, REFERENCE, REPO, make_submission, rubric_of_parts

P6_PARTS = ("p6a", "p6b", "p6c", "p6d", "p6e", "p6f", "p6g", "p6h")
COURSE_STYLE = REPO / "tests" / "fixtures" / "p6_course_style" / "submission"


@pytest.fixture(scope="module")
def p6_rubric(tmp_path_factory):
    return rubric_of_parts(tmp_path_factory.mktemp("rubric") / "rubric.yaml", *P6_PARTS)


def test_course_style_submission_grades_unchanged(tmp_path, grade_submission, p6_rubric):
    """sample.py, likelihood.py and classifier.py as the course's starter code has them (tqdm bars
    on stderr, `from submission.likelihood import log_likelihood`), with course data if present."""
    files = {path.name: path.read_text() for path in COURSE_STYLE.glob("*.py")}
    folder = make_submission(tmp_path / "course", files)
    env = {"AUTOGRADER_DATA_DIR": str(COURSE_DATA)} if COURSE_DATA.is_dir() else {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        graded = grade_submission(folder, rubric=p6_rubric, model="tiny")
    assert graded.failed() == set(), {t: graded.output(t) for t in graded.failed()}


GRADE_AND_REPORT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from autograder.runner import grade
    report = grade(Path(sys.argv[1]), rubric=sys.argv[2], model="tiny", seed=7)
    print(json.dumps({"failed": {r.test.test_id: r.output for r in report.results if not r.passed},
                      "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
""")


@pytest.fixture
def models_folder():
    """An empty AUTOGRADER_MODELS folder the sandbox user can read (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="autograder-test-models-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_reference_cache_is_built_once_and_reused(models_folder, tmp_path_factory):
    """The first run builds the tiny model and the cache; the second reads the cache: it
    neither rebuilds it nor imports torch (the model runs only in the children)."""
    rubric = rubric_of_parts(tmp_path_factory.mktemp("rubric") / "rubric.yaml", "p6d", "p6f")
    env = {**os.environ, "AUTOGRADER_MODELS": str(models_folder), "PYTHONPATH": str(REPO)}
    env.pop("AUTOGRADER_DATA_DIR", None)

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", GRADE_AND_REPORT, str(REFERENCE), str(rubric)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run()
    assert first["failed"] == {}, first
    files = sorted((models_folder / "reference-cache").glob("*.json"))
    caches = [f for f in files if ".seconds-" not in f.name]
    timings = [f for f in files if f.name.endswith(".seconds-cpu.json")]
    assert len(caches) == 1 and len(timings) == 1 and len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    data = json.loads(caches[0].read_text())  # plain JSON, no pickle
    assert data["built"]["device"] == "cpu" and data["texts"] and data["scaled"]
    assert caches[0].stat().st_mode & 0o077 == 0  # the reference's answers: the grader's user only
    measured = json.loads(timings[0].read_text())  # the reference's time per model test (calibration)
    assert set(measured["seconds"]) == {"p6d_public", "p6d_random", "p6f_public", "p6f_random"}
    assert measured["failed"] == {}

    second = run()
    assert second == {"failed": {}, "torch": False, "transformers": False}
    assert sorted((models_folder / "reference-cache").glob("*.json")) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps


@pytest.mark.slow
def test_plots_command_writes_pngs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if COURSE_DATA.is_dir():
        env["AUTOGRADER_DATA_DIR"] = str(COURSE_DATA)
    done = subprocess.run([sys.executable, "-m", "autograder", "plots", "--model", "tiny", "--out", str(tmp_path / "plots"),
                           "--submission", str(REFERENCE)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {"log_likelihood_random.png"}  # alone, no "all" figure: it would be the same one twice
    if COURSE_DATA.is_dir():
        names |= {"log_likelihood_shakespeare.png", "log_likelihood_neurips.png", "log_likelihood_all.png"}
    written = {path.name for path in (tmp_path / "plots").glob("*.png")}
    assert written == names
    assert all((tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in names)
    assert len({(tmp_path / "plots" / name).read_bytes() for name in names}) == len(names)
    assert "log-likelihoods" in done.stderr and "100%" in done.stderr  # the progress bar


def test_plots_without_course_data_name_the_missing_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRADER_DATA_DIR"}
    done = subprocess.run([sys.executable, "-m", "autograder", "plots", "--model", "tiny", "--out", str(tmp_path / "plots")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "course data not found: random.pkl, shakespeare.pkl, neurips.pkl" in done.stderr
    assert "AUTOGRADER_DATA_DIR" in done.stderr
    assert {path.name for path in (tmp_path / "plots").glob("*.png")} == {"log_likelihood_random.png"}


@pytest.mark.parametrize("files, expected", [
    ({"likelihood.py": "def log_likelihood(model, text):\n    return (\n"}, "SyntaxError"),
    ({"likelihood.py": "import os\nos._exit(3)\n"}, "exited with status 3"),
])
@pytest.mark.slow
def test_plots_of_a_broken_submission_say_so_in_one_line(tmp_path, files, expected):
    folder = make_submission(tmp_path / "broken", files)
    done = subprocess.run([sys.executable, "-m", "autograder", "plots", "--model", "tiny", "--out", str(tmp_path / "plots"),
                           "--submission", str(folder)], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.startswith("plots:")]
    assert done.returncode == 1 and len(lines) == 1 and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_plots_of_an_upload_without_code_say_so_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "autograder", "plots", "--model", "tiny", "--out", str(tmp_path / "plots"),
                           "--submission", str(tmp_path / "empty")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "no Python files found" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_plots_command_reports_a_failing_submission(tmp_path):
    folder = make_submission(tmp_path / "broken", {"likelihood.py": "def log_likelihood(model, text):\n    return 'high'\n"})
    done = subprocess.run([sys.executable, "-m", "autograder", "plots", "--model", "tiny", "--out", str(tmp_path / "plots"),
                           "--submission", str(folder)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "log_likelihood(model, text) returned 'high'" in done.stderr
    assert not (tmp_path / "plots").exists()
