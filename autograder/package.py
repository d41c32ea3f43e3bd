"""``python -m autograder package``: the zip an instructor uploads to Gradescope as the autograder.

It holds what grading needs, from the files git tracks (their contents in the working tree, so
an edited rubric.yaml is packaged, with a note that it is not committed): ``autograder/``,
``reference/``, ``setup.sh``, ``run_autograder``, ``requirements.txt`` and ``README.md``, at the
top of the zip as Gradescope wants them; never ``.venv``, ``.git``, caches, ``tests/`` or
``models/``. It adds ``setup.env`` (``SETUP_ENV``), which setup.sh reads: torch's CPU build, and
a build that fails unless GPT-2 small was fetched, so students are never graded with the tiny
test model. The zip is reproducible: fixed timestamps, sorted entries, fixed permissions.
"""
from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

from .results import write_atomically

REPO_ROOT = Path(__file__).resolve().parents[1]
INCLUDED = ("autograder", "reference", "setup.sh", "run_autograder", "requirements.txt", "README.md")
REQUIRED = ("setup.sh", "run_autograder", "requirements.txt", "autograder/__main__.py", "autograder/rubric.yaml")
EXECUTABLE = {"setup.sh", "run_autograder"}
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ipynb_checkpoints"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
SETUP_ENV = """\
# Written by `python -m autograder package`: setup.sh's settings for Gradescope's image build.
# Variables set in the environment win over these.
: "${AUTOGRADER_TORCH:=cpu}"         # torch's CPU build: Gradescope's graders have no GPU
: "${AUTOGRADER_REQUIRE_GPT2:=1}"    # fail the build unless GPT-2 small was fetched from the hub
"""


class PackageError(RuntimeError):
    """The package cannot be built (not a git checkout, a required file missing)."""


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PackageError(f"git is needed to list the tracked files: {error}") from None
    if done.returncode != 0:
        raise PackageError(f"{root}: not a git checkout ({done.stderr.strip()}); the package is built from the "
                           f"files git tracks")
    return done.stdout


def _wanted(path: str) -> bool:
    parts = path.split("/")
    return (parts[0] in INCLUDED and not SKIPPED_PARTS.intersection(parts)
            and not path.endswith(SKIPPED_SUFFIXES))


def packaged_files(root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    """(files to package, notes): the tracked files under INCLUDED that exist, in order."""
    tracked = [p for p in _git(root, "ls-files", "-z").split("\0") if p]
    files = sorted(p for p in tracked if _wanted(p) and (root / p).is_file())
    notes = []
    missing = [p for p in REQUIRED if p not in files]
    if missing:
        raise PackageError(f"required files are not tracked by git: {', '.join(missing)}")
    modified, deleted, untracked = [], [], []
    # -z: paths as they are (no quotes around names with spaces), each entry ending in NUL
    entries = iter(_git(root, "status", "--porcelain", "-z", "--", *INCLUDED).split("\0"))
    for entry in entries:
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            next(entries, None)  # a rename's or copy's source path follows as an entry of its own
        if code == "??":
            untracked += [path] if _wanted(path.rstrip("/")) else []
        elif "D" in code:
            deleted += [path] if _wanted(path) else []
        elif path in files:
            modified.append(path)
    if modified:
        notes.append(f"packaged with changes not committed: {', '.join(modified)}")
    if deleted:
        notes.append(f"not packaged (deleted, the deletion not committed): {', '.join(deleted)}")
    if untracked:
        notes.append(f"not packaged (not tracked by git; `git add` them to include them): {', '.join(untracked)}")
    return files, notes


def _data_notes(root: Path, files: list[str]) -> list[str]:
    """A rubric data file outside the package would be missing on Gradescope: say so."""
    from .rubric import RubricError, data_files
    try:
        configured = data_files(root / "autograder" / "rubric.yaml", environ={})
    except RubricError as error:
        return [f"the rubric's data section: {error}"]
    outside = [f"{name} ({path})" for name, path in configured.items()
               if not (path.is_relative_to(root) and path.relative_to(root).as_posix() in files)]
    if outside:
        return [f"the rubric's data files {', '.join(outside)} are not in the package: on Gradescope P6 would grade "
                f"without them; copy them under autograder/, point the rubric's data: section there and git add them"]
    return []


def build_package(out: Path | str = "autograder.zip", *, root: Path = REPO_ROOT) -> str:
    """Write the Gradescope autograder zip to ``out``; returns a report of what it holds."""
    root, out = Path(root), Path(out)
    files, notes = packaged_files(root)
    notes += _data_notes(root, files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in [*((p, (root / p).read_bytes()) for p in files), ("setup.env", SETUP_ENV.encode())]:
            info = zipfile.ZipInfo(path, date_time=ZIP_TIME)
            info.external_attr = (0o100755 if path in EXECUTABLE else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    write_atomically(out, buffer.getvalue(), shared=True)
    lines = [f"wrote {out} ({len(files) + 1} files, {len(buffer.getvalue()) >> 10} KiB): upload it on Gradescope as "
             f"the autograder (a base image whose python3 is 3.11 or newer, e.g. Ubuntu 24.04). Its setup.sh installs torch's CPU build and "
             f"fetches GPT-2 small while the image builds (the build fails if it cannot)."]
    return "\n".join([*lines, *(f"note: {n}" for n in notes)])
