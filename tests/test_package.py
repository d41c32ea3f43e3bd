"""The Gradescope package: what the zip holds, and the zip at work in a fake /autograder tree
(its setup.sh run offline with the tiny model, then run_autograder grading a submission); and
setup.sh's own rules (a .venv that cannot run is rebuilt; an unreachable torch index neither
breaks nor slows the set-up).

Installing the requirements from scratch takes minutes, so the tree's .venv is seeded with a
hard-linked copy of this checkout's (setup.sh then finds it up to date, as on a second run);
AUTOGRADER_TEST_FULL_SETUP=1 makes setup.sh install everything itself."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from autograder.package import packaged_files
from autograder.rubric import load_rubric
from conftest import REFERENCE, REPO, rubric_of_parts
from gradescope_schema import validate_results

VENV = REPO / ".venv"


def build(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "package", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_the_package_holds_what_grading_needs_and_nothing_else(tmp_path):
    done = build(tmp_path / "autograder.zip")
    assert done.returncode == 0, done.stderr
    assert "upload it on Gradescope" in done.stdout
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        infos = {info.filename: info for info in archive.infolist()}
        setup_env = archive.read("setup.env").decode()
    for name in ("setup.sh", "run_autograder", "setup.env", "requirements.txt", "autograder/__main__.py",
                 "autograder/rubric.yaml", "autograder/child/main.py", "reference/submission/p3_param_counts.py"):
        assert name in infos, name
    for name in infos:
        assert not name.startswith((".venv", ".git", "tests/", "models/", "results/", "student_template/")), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
    assert stat.S_IMODE(infos["setup.sh"].external_attr >> 16) == 0o755
    assert stat.S_IMODE(infos["run_autograder"].external_attr >> 16) == 0o755
    assert stat.S_IMODE(infos["autograder/rubric.yaml"].external_attr >> 16) == 0o644
    assert "AUTOGRADER_TORCH:=cpu" in setup_env and "AUTOGRADER_REQUIRE_GPT2:=1" in setup_env
    assert (tmp_path / "autograder.zip").stat().st_size < 2 << 20
    build(tmp_path / "again.zip")  # reproducible: the same files give the same bytes
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "autograder.zip").read_bytes()


def test_the_notes_name_deleted_and_untracked_files_as_they_are(tmp_path):
    """A checkout with a tracked file deleted, another edited, and untracked files (one whose
    name has a space, which git's plain porcelain would quote)."""
    for name in ("setup.sh", "run_autograder", "requirements.txt", "autograder/__main__.py", "autograder/rubric.yaml",
                 "autograder/gone.py", "autograder/edited.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("# tracked\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=test", "-c", "user.email=test@example.edu"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tracked"], check=True)
    (tmp_path / "autograder" / "gone.py").unlink()
    (tmp_path / "autograder" / "edited.py").write_text("# edited\n")
    (tmp_path / "autograder" / "my notes.py").write_text("# untracked\n")
    (tmp_path / "autograder" / "new.py").write_text("# untracked\n")
    files, notes = packaged_files(tmp_path)
    assert "autograder/gone.py" not in files and "autograder/edited.py" in files
    assert notes == ["packaged with changes not committed: autograder/edited.py",
                     "not packaged (deleted, the deletion not committed): autograder/gone.py",
                     "not packaged (not tracked by git; `git add` them to include them): autograder/my notes.py, "
                     "autograder/new.py"], notes


def test_the_zip_gets_the_permissions_the_umask_gives(tmp_path):
    done = subprocess.run([sys.executable, "-m", "autograder", "package", "--out", str(tmp_path / "autograder.zip")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    assert oct((tmp_path / "autograder.zip").stat().st_mode & 0o777) == oct(0o644)


def _unzip(archive: Path, dest: Path) -> None:
    """As Gradescope does: unzip keeps the permissions the zip records."""
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(archive), "-d", str(dest)], check=True)
        return
    with zipfile.ZipFile(archive) as handle:
        for info in handle.infolist():
            path = Path(handle.extract(info, dest))
            path.chmod(stat.S_IMODE(info.external_attr >> 16) or 0o644)


def _seed_venv(dest: Path) -> None:
    if os.environ.get("AUTOGRADER_TEST_FULL_SETUP") == "1":
        return
    if subprocess.run(["cp", "-al", str(VENV), str(dest)], capture_output=True).returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(VENV, dest, symlinks=True)


@pytest.mark.slow
@pytest.mark.skipif(not (VENV / "bin" / "python").exists(), reason="needs setup.sh's .venv")
def test_the_package_sets_up_and_grades_in_a_gradescope_tree(tmp_path):
    package = tmp_path / "autograder.zip"
    assert build(package).returncode == 0
    # In /tmp (reachable by the sandbox user, like /autograder), not in pytest's private tmp_path.
    base = Path(tempfile.mkdtemp(prefix="autograder-test-package-", dir="/tmp"))
    try:
        root = base / "autograder"
        (root / "source").mkdir(parents=True)
        _unzip(package, root / "source")
        shutil.copy(root / "source" / "run_autograder", root / "run_autograder")  # as Gradescope does
        _seed_venv(root / "source" / ".venv")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGRADER_")}
        env.update(HF_HUB_OFFLINE="1", AUTOGRADER_NO_GPT2="1")
        # offline, the package's setup.sh refuses to leave an image that would grade with the tiny model ...
        start = time.monotonic()
        refused = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root, env=env, capture_output=True,
                                 text=True, timeout=900)
        assert refused.returncode == 1 and "GPT-2 small could not be fetched" in refused.stderr, refused.stderr[-2000:]
        # ... unless told to: then it prepares the tiny model and its reference outputs in the tree
        setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root,
                               env={**env, "AUTOGRADER_REQUIRE_GPT2": "0"}, capture_output=True, text=True, timeout=900)
        assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
        assert "default model: tiny" in setup.stdout and (root / "source" / "models" / "tiny").is_dir()
        assert time.monotonic() - start < 600
        # a student's upload, graded as Gradescope runs it
        shutil.copytree(REFERENCE / "submission", root / "submission")
        (root / "results").mkdir()
        rubric = rubric_of_parts(base / "rubric.yaml", "p3a", "p6a_public", "p6d_public")
        graded = subprocess.run([str(root / "run_autograder")], cwd=root, capture_output=True, text=True, timeout=600,
                                env={**env, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_RUBRIC": str(rubric)})
        assert graded.returncode == 0, graded.stderr[-2000:]
        data = json.loads((root / "results" / "results.json").read_text())
        validate_results(data)
        full = sum(t.weight for t in load_rubric(rubric))
        assert data["score"] == full, [(t["name"], t["output"][:300]) for t in data["tests"]]
        assert f"{root / 'source' / 'models' / 'tiny'}" in data["output"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


STUB_MAIN = "import sys\nprint('stub autograder', *sys.argv[1:])\n"


@pytest.mark.slow
def test_setup_rebuilds_a_venv_that_cannot_run_and_skips_an_unreachable_index(tmp_path):
    """setup.sh in a tree whose requirements are empty and whose autograder is a stub: only its
    own logic runs. The torch index is an address that never answers."""
    tree = tmp_path / "tree"
    (tree / "autograder").mkdir(parents=True)
    shutil.copy(REPO / "setup.sh", tree / "setup.sh")
    (tree / "requirements.txt").write_text("# nothing to install\n")
    (tree / "autograder" / "__init__.py").write_text("")
    (tree / "autograder" / "__main__.py").write_text(STUB_MAIN)
    (tree / ".venv" / "bin").mkdir(parents=True)
    (tree / ".venv" / "bin" / "python").symlink_to("/nonexistent/python3")  # a venv moved from elsewhere
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGRADER_")}
    env.update(AUTOGRADER_TORCH_INDEX="http://10.255.255.1/whl/cpu", PYTHON=shutil.which("python3") or sys.executable)
    start = time.monotonic()
    done = subprocess.run(["bash", str(tree / "setup.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cannot run; rebuilding .venv" in done.stdout
    assert "does not answer" in done.stdout and "stub autograder prepare-model" in done.stdout
    assert subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c", "import sys"]).returncode == 0
    assert time.monotonic() - start < 120  # the unreachable index cost a few seconds, not pip's minutes of retries
    again = subprocess.run(["bash", str(tree / "setup.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and ".venv is up to date" in again.stdout
