"""Finding the submission in an upload as students make them, and explaining what is wrong.

``locate_submission(upload)`` returns the folder that holds the submission's files:

1. ``upload/submission/`` when it exists;
2. else the one candidate among ``submission/`` folders nested up to three levels deep
   (``src/submission``) and folders up to two levels deep that hold problem files loose
   (``hw1/p1_mle_kl.py``);
3. else, with no candidate, ``upload`` itself when it holds ``.py`` files, or the one folder
   (up to two levels deep) that does (files misnamed in a subfolder).

Several candidates are refused with their list (grade one, or use ``batch`` for a folder of
submissions); an upload with only a notebook, or only a zip, is told so. Files whose names are
close to a problem file (``P3_param_counts.py``, ``p1_mle_kl (1).py``) get a "did you mean"
(``misnamed_files``), shown in the notes and in the rows of the tests that needed them; they are
not renamed, since a grader that guesses which file is meant could grade the wrong one.
"""
from __future__ import annotations

import difflib
import os
import re
import stat
from pathlib import Path

from .registry import expected_files

# Python files of the problem set (the registry's problems): to recognise loose uploads and misnamed files.
EXPECTED_FILES = expected_files()
# Folders never searched: archive debris, caches, environments.
SKIPPED_FOLDERS = {"__MACOSX", "__pycache__", ".git", ".venv", "venv", "env", "site-packages", "node_modules",
                   ".ipynb_checkpoints"}
SUBMISSION_DEPTH = 3  # how deep a nested submission/ folder is looked for
LOOSE_DEPTH = 2       # how deep a folder of loose problem files is looked for
# What browsers and file managers add to a name: "p1 (1).py", "p1-2.py", "p1 copy.py", "Copy of p1.py".
_COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|[\s_-]+(copy|kopie)(\s*\d+)?|-\d+|_\d+)$", re.IGNORECASE)
_COPY_PREFIX = re.compile(r"^(copy of\s+)", re.IGNORECASE)


def submission_files(source: Path) -> tuple[list[Path], list[str]]:
    """The submission's ``.py`` files under ``source`` (relative paths, sorted) and a note for
    each link that was left out. Links never lead outside the upload: symbolic links (to files or
    folders) are not followed, and files with more than one hard link are left out, so an upload
    that links to the grader's own files (``submission -> ../reference/submission``, a ``zip -y``
    archive) cannot have them graded or read as root. Caches and archive debris are skipped."""
    source = Path(source)
    files, ignored = [], []
    for folder, subfolders, names in os.walk(source, followlinks=False):
        here = Path(folder)
        for name in sorted(subfolders):
            if (here / name).is_symlink():
                ignored.append(f"{(here / name).relative_to(source)}/ (a symbolic link)")
        subfolders[:] = sorted(n for n in subfolders if not _skipped(n) and not (here / n).is_symlink())
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = here / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                ignored.append(f"{path.relative_to(source)} (a symbolic link)")
            elif stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                ignored.append(f"{path.relative_to(source)} (a hard link)")
            elif stat.S_ISREG(info.st_mode):
                files.append(path.relative_to(source))
    return sorted(files), ignored


def read_upload_file(path: Path) -> bytes:
    """A file's bytes, refusing to follow a symbolic link swapped in since it was listed."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read()


def links_note(ignored: list[str]) -> list[str]:
    """The report's line about links left out of the upload (none when there were none)."""
    if not ignored:
        return []
    shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    return [f"Left out (links are not followed; upload the files themselves): {shown}"]


class SubmissionError(Exception):
    """The upload cannot be graded at all (no Python files, too large, several submissions);
    the message says why and what to do."""


def _skipped(name: str) -> bool:
    return name in SKIPPED_FOLDERS or name.startswith(".")


def _folders(root: Path, depth: int) -> list[tuple[int, Path]]:
    """(depth, folder) for root and its subfolders down to ``depth``, in sorted breadth-first
    order, skipping SKIPPED_FOLDERS and hidden folders; symlinks are not followed."""
    found, level = [(0, root)], [root]
    for d in range(1, depth + 1):
        nxt = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not _skipped(p.name))
            except OSError:
                continue
            nxt.extend(children)
        found.extend((d, f) for f in nxt)
        level = nxt
    return found


def _python_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".py" and p.is_file() and not p.is_symlink())
    except OSError:
        return []


def _has_python(folder: Path) -> bool:
    return bool(submission_files(folder)[0])


def candidates(upload: Path) -> list[tuple[Path, str]]:
    """Every folder in ``upload`` that looks like a whole submission, with how it was found:
    nested ``submission/`` packages and folders holding problem files loose. A candidate inside
    a package is part of it (``submission/helpers``), not another submission."""
    found: list[tuple[Path, str]] = []
    for depth, folder in _folders(upload, SUBMISSION_DEPTH):
        if folder.name == "submission" and depth > 0 and _has_python(folder):
            found.append((folder, "package"))
        elif depth <= LOOSE_DEPTH and any(p.name in EXPECTED_FILES for p in _python_files(folder)):
            found.append((folder, "loose"))
    kept = []
    for folder, kind in found:
        if not any(other_kind == "package" and other in folder.parents for other, other_kind in found):
            kept.append((folder, kind))
    return kept


def locate_submission(upload: Path) -> tuple[Path, str]:
    """The folder holding the submission's files, and how it was found (see the module
    docstring). Raises SubmissionError saying what is wrong with the upload and what to do."""
    upload = Path(upload)
    if not upload.is_dir():
        raise SubmissionError(f"{upload} is not a folder")
    if (upload / "submission").is_dir() and not (upload / "submission").is_symlink():
        return upload / "submission", "submission/ package"
    found = candidates(upload)
    if len(found) == 1:
        folder, kind = found[0]
        if kind == "package":
            return folder, f"{folder.relative_to(upload)}/ package"
        if folder == upload:
            return folder, "files uploaded loose"
        return folder, f"files uploaded loose in {folder.relative_to(upload)}/"
    if len(found) > 1:
        listed = "; ".join(f"{f.relative_to(upload)}/" + (" (files loose)" if kind == "loose" else "")
                           for f, kind in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        raise SubmissionError(
            f"the upload holds {len(found)} submissions, not one: {listed}{more}. Upload (or grade) only one of "
            f"them; to grade a folder of many students' submissions use `python -m autograder batch {upload}`")
    if _python_files(upload):
        return upload, "files uploaded loose"
    if (upload / "submission").is_symlink():
        raise SubmissionError("submission/ is a symbolic link: links in an upload are not followed; upload the "
                              "folder itself")
    with_python = [f for d, f in _folders(upload, LOOSE_DEPTH) if d > 0 and _python_files(f)]
    if len(with_python) == 1:
        return with_python[0], f"files uploaded loose in {with_python[0].relative_to(upload)}/"
    raise SubmissionError(_nothing_to_grade(upload))


def _nothing_to_grade(upload: Path) -> str:
    """Why an upload without a usable .py file cannot be graded, naming what it does hold."""
    files = [p for d, f in _folders(upload, SUBMISSION_DEPTH) for p in sorted(f.iterdir()) if p.is_file()]
    notebooks = [p for p in files if p.suffix == ".ipynb"]
    archives = [p for p in files if p.suffix.lower() in (".zip", ".tar", ".gz", ".tgz", ".7z", ".rar")]
    expected = f"the files {', '.join(EXPECTED_FILES[:3])}, … (or the submission/ folder holding them)"
    if notebooks:
        names = ", ".join(str(p.relative_to(upload)) for p in notebooks[:3])
        return (f"the upload has only a notebook ({names}) and no Python files: the grader runs the .py files of "
                f"submission/. Copy each answer into its file ({', '.join(EXPECTED_FILES[:2])}, …) and upload "
                f"those .py files instead of the notebook")
    if archives:
        names = ", ".join(str(p.relative_to(upload)) for p in archives[:3])
        return f"the upload holds an archive ({names}) but no Python files: upload {expected} instead"
    with_python = [f for d, f in _folders(upload, SUBMISSION_DEPTH) if _python_files(f)]
    if len(with_python) > 1:
        listed = "; ".join(f"{f.relative_to(upload)}/" for f in with_python[:10])
        return (f"no problem files found in the upload ({upload}), but Python files in several folders: {listed}. "
                f"Upload {expected}")
    return f"no Python files found in the upload ({upload}); expected a submission/ folder or {expected}"


def _normalised(name: str) -> str:
    stem = name[:-3] if name.lower().endswith(".py") else name
    stem = _COPY_PREFIX.sub("", stem.strip())
    previous = None
    while previous != stem:  # "p1 (1) copy" loses both
        previous, stem = stem, _COPY_SUFFIX.sub("", stem).strip()
    return re.sub(r"[\s-]+", "_", stem.lower()) + ".py"


def misnamed_files(source: Path) -> dict[str, str]:
    """For each problem file missing from ``source``, the file there that was probably meant
    (``{"p3_param_counts.py": "P3_param_counts.py"}``): same name but for case, spaces, a copy
    suffix such as `` (1)``, or one close by spelling."""
    present = [p.name for p in _python_files(Path(source))]
    missing = [name for name in EXPECTED_FILES if name not in present]
    spare = [name for name in present if name not in EXPECTED_FILES and name != "__init__.py"]
    suggestions: dict[str, str] = {}
    for name in missing:
        exact = [f for f in spare if _normalised(f) == name and f not in suggestions.values()]
        close = exact or [f for f in spare if f not in suggestions.values() and
                          difflib.get_close_matches(_normalised(f), [name], n=1, cutoff=0.85)]
        if close:
            suggestions[name] = close[0]
    return suggestions


def did_you_mean(missing: str, found: str) -> str:
    """The hint for one misnamed file."""
    return (f"{missing} is missing; did you mean {found}? Rename it to {missing} (names are case-sensitive and "
            f"must match exactly)")


def upload_notes(source: Path) -> list[str]:
    """Lines about the upload for the report: misnamed files, and a notebook beside the files."""
    notes = [did_you_mean(missing, found) for missing, found in misnamed_files(source).items()]
    notebooks = sorted(p.name for p in Path(source).glob("*.ipynb"))
    present = {p.name for p in _python_files(Path(source))}
    if notebooks and not present & set(EXPECTED_FILES):
        notes.append(f"{', '.join(notebooks)}: notebooks are not graded; only the .py files are")
    return notes
