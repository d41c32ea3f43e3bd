"""The command line as users meet it: usage errors (one line, exit 2, nothing graded), Ctrl-C
(a real SIGINT: exit 130, nothing written, nothing left behind), the students' check (rows as
tests finish, feedback in the terminal, hidden tests counted, the model named), a grader-side
failure confined to its part, extra credit marked."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from autograder import models
from conftest import REFERENCE, REPO, TEMPLATE, make_submission, rubric_of_parts
from gradescope_schema import validate_results


def cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def _rubric(path: Path, *ids: str, **changes: dict) -> Path:
    """A rubric with the real rubric's tests ``ids`` (parts or test ids), entries updated by
    ``changes`` (test id -> fields)."""
    rubric_of_parts(path, *ids)
    data = yaml.safe_load(path.read_text())
    for test_id, fields in changes.items():
        data["tests"][test_id].update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def p3_rubric(tmp_path_factory) -> Path:
    return rubric_of_parts(tmp_path_factory.mktemp("rubric") / "rubric.yaml", "p3a", "p3b", "p3c")


def _cuda_build() -> bool:
    from importlib import metadata
    if metadata.version("torch").endswith("+cpu"):
        return False
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.version.cuda is not None "
                                                  "and torch.cuda.is_available())"], capture_output=True, text=True)
    return probe.stdout.strip() == "True"


USAGE_ERRORS = [
    (["grade", "{tmp}/nope"], "nope: no such folder"),
    (["check", "{tmp}/nope"], "nope: no such folder"),
    (["grade", str(REFERENCE), "--model", "{tmp}/no-model"], "--model"),
    (["grade", str(REFERENCE), "--part", "p9"], "no part p9 in the rubric"),
    (["grade", str(REFERENCE), "--model", "gpt2"], "GPT-2 small was not fetched"),
    (["grade", str(REFERENCE), "--device", "cuda"], "--device cuda"),
]


@pytest.mark.parametrize("args, message", USAGE_ERRORS, ids=["path", "check-path", "model", "part", "gpt2", "cuda"])
def test_usage_errors_are_one_line_and_exit_2_before_grading(tmp_path, args, message):
    if "gpt2" in args and models.is_prepared(models.models_root() / models.GPT2):
        pytest.skip("GPT-2 small is prepared here")
    if "cuda" in args and _cuda_build():
        pytest.skip("CUDA is available here")
    results = tmp_path / "results.json"
    start = time.monotonic()
    done = cli(*[a.format(tmp=tmp_path) for a in args], "--results", str(results), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not results.exists() and "score/max" not in done.stdout
    assert time.monotonic() - start < 60  # refused before grading, not after


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and str(os.getpid()) != entry:
                found.append(cmdline)
    return found


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_grading_at_once_and_writes_nothing(tmp_path, signum, status):
    """A real SIGINT (Ctrl-C) or SIGTERM while student code runs an endless loop that the rubric
    would let run for 10 minutes: exit 130 (143) within seconds, no results file (an earlier one
    is removed), no temporary folder, no process left."""
    rubric = _rubric(tmp_path / "rubric.yaml", "p3a", "p3b", "p3c", p3c_public={"timeout": 600},
                     p3c_random={"timeout": 600})
    folder = make_submission(tmp_path / "sub", {"p3_param_counts.py": """
        from math import prod
        def full_joint(k): return prod(k) - 1
        def independent(k): return sum(x - 1 for x in k)
        def markov(k, m):
            while True:
                pass
    """})
    results = tmp_path / "results.json"
    results.write_text('{"score": 40}')  # an earlier run's file must not pass for this run's
    scratch = Path(tempfile.mkdtemp(prefix="autograder-test-sigint-", dir="/tmp"))
    scratch.chmod(0o755)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(folder), "--rubric", str(rubric),
                                 "--results", str(results)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "TMPDIR": str(scratch)})
        seen = []
        for line in proc.stdout:  # rows arrive as tests finish, while grading goes on
            seen.append(line)
            if line.startswith("p3b") and "random" in line:
                break
        assert proc.poll() is None
        time.sleep(1.0)  # p3c's endless loop is running now
        proc.send_signal(signum)
        start = time.monotonic()
        rest, stderr = proc.communicate(timeout=60)
        assert proc.returncode == status, stderr
        assert time.monotonic() - start < 20
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert not results.exists() and list(tmp_path.glob(".results*")) == []  # nor its reserved space
        assert "total" not in rest  # no table that looks finished
        assert list(scratch.iterdir()) == []
        assert _processes_mentioning(str(scratch)) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_check_shows_each_failure_and_selects_parts(tmp_path):
    done = cli("check", str(TEMPLATE), "--part", "p3a")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("p3")]
    assert len(rows) == 2 and all(row.startswith("p3a") for row in rows)
    assert "| On full_joint([2, 2]): full_joint() is not implemented yet" in done.stdout
    assert "p3b" not in done.stdout and not (REPO / "results" / "check.json").exists()


@pytest.mark.slow
def test_check_counts_hidden_tests_and_names_the_model(tmp_path):
    rubric = _rubric(tmp_path / "rubric.yaml", "p3a_public", "p3a_random", "p6d_public",
                     p3a_random={"visibility": "hidden"})
    done = cli("check", str(REFERENCE), "--rubric", str(rubric), "--model", "tiny")
    assert done.returncode == 0, done.stderr
    assert "exact ints beyond 2**63" not in done.stdout  # the hidden test's name
    assert "1 hidden test (1 points) graded on Gradescope only" in done.stdout
    assert "P6 is checked here with the tiny test model" in done.stdout and "GPT-2 small" in done.stdout
    graded = cli("grade", str(REFERENCE), "--rubric", str(rubric), "--model", "tiny", "--results",
                 str(tmp_path / "r.json"))
    assert "exact ints beyond 2**63" in graded.stdout and "hidden test" not in graded.stdout


def test_a_model_that_is_not_there_costs_only_the_tests_that_run_it(tmp_path, grade_submission):
    rubric = _rubric(tmp_path / "rubric.yaml", "p3a", "p6a_public", "p6d_public")
    graded = grade_submission(REFERENCE, rubric=rubric, model=str(tmp_path / "no-model"))
    validate_results(graded.json)
    assert graded.score("p3a_public") == 0.5 and graded.score("p3a_random") == 1.0
    assert graded.score("p6a_public") == 0.5  # P6's counting questions need no model
    assert graded.score("p6d_public") == 0
    assert "could not prepare the model for P6" in graded.output("p6d_public")
    assert "not a fault of your submission" in graded.output("p6d_public")
    assert graded.json["extra_data"]["status"] == "grader_error"


def test_run_autograder_with_a_broken_model_setting_still_grades_the_rest(tmp_path):
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("needs setup.sh's .venv")
    rubric = _rubric(tmp_path / "rubric.yaml", "p3a", "p6d_public")
    root = tmp_path / "autograder"
    (root / "results").mkdir(parents=True)
    shutil.copytree(REFERENCE / "submission", root / "submission")
    done = subprocess.run(["bash", str(REPO / "run_autograder")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_RUBRIC": str(rubric),
                               "AUTOGRADER_MODEL": str(tmp_path / "no-model")})
    assert done.returncode == 0
    data = json.loads((root / "results" / "results.json").read_text())
    validate_results(data)
    scores = {row["name"].split("]")[0][1:]: row["score"] for row in data["tests"]}
    assert data["score"] == 1.5 and scores["p6d"] == 0


def test_extra_credit_is_marked_in_the_table_and_results(tmp_path):
    rubric = _rubric(tmp_path / "rubric.yaml", "p3a_public", "p6g_answer")
    results = tmp_path / "r.json"
    done = cli("grade", str(REFERENCE), "--rubric", str(rubric), "--model", "tiny", "--results", str(results))
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("p6g"))
    assert "(extra credit)" in row
    assert "total" in done.stdout and "0.5 + 2 extra credit" in done.stdout
    data = json.loads(results.read_text())
    validate_results(data)
    ec = next(t for t in data["tests"] if t["name"].startswith("[p6g]"))
    assert ec["name"].endswith("(extra credit)") and "extra credit" in ec["tags"]
    assert data["score"] == 2.5 and data["extra_data"]["max_score"] == 0.5
    assert "Total: 2.5/0.5 (0.5 + 2 extra credit" in data["output"]
