"""Grading one submission: rubric, sandbox, checks, report.

``grade()`` is what the CLI and ``run_autograder`` call. It never raises for a bad submission
or a failing grader: the report it returns (and the results.json it writes) always has a row for
every rubric test, and a failure of the grader itself becomes a row saying so.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
import traceback
from pathlib import Path

import pytest

from . import isolation
from .grading import GradingPlugin
from .results import GradingReport, failure_report, write_results
from .rubric import DEFAULT_RUBRIC, GradedTest, RubricError, data_files, load_rubric
from .sandbox import Sandbox, SubmissionError, locate_submission

CHECKS_DIR = Path(__file__).with_name("checks")
REPO_ROOT = Path(__file__).resolve().parents[1]
# Folders the child's user must not read: the grader, the reference, the project's tests.
TRUSTED_FOLDERS = (REPO_ROOT / "autograder", REPO_ROOT / "reference", REPO_ROOT / "tests")


def submission_seed(upload: Path) -> int:
    """The default seed: a hash of the submission's Python files, so regrading the same files
    draws the same instances, and changing a file to fit the drawn instances draws new ones."""
    source, _ = locate_submission(upload)
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.py")):
        if "__pycache__" not in path.parts and path.is_file():
            digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return int.from_bytes(digest.digest()[:4], "big")


def _needs_model(tests: list[GradedTest]) -> bool:
    return any(t.part.startswith("p6") for t in tests)


def _resolve_model(spec: str | None, device: str) -> tuple[Path | None, str, str]:
    """(model folder, description, device) for P6, resolving the default and ``auto``."""
    from . import models
    spec = spec or models.default_model_spec()
    model_dir = models.resolve_model(spec)
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model_dir, f"{spec} ({model_dir}, fingerprint {models.fingerprint(model_dir)})", device


def grade(upload: Path | str, *, model: str | None = None, device: str = "cpu", seed: int | None = None,
          rubric: Path | str = DEFAULT_RUBRIC, results_path: Path | str | None = None,
          checks_dir: Path = CHECKS_DIR) -> GradingReport:
    """Grade the submission in ``upload`` and return the report; write results.json if asked.

    upload: a folder with a ``submission/`` package or the files loose.
    model: ``tiny``, ``gpt2`` or a checkpoint folder; None takes the prepared default.
    device: ``cpu``, ``cuda`` or ``auto`` for the child processes.
    seed: the seed random instances are drawn from; None derives it from the files.
    """
    start = time.monotonic()
    upload = Path(upload)
    tests: list[GradedTest] = []
    try:
        tests = load_rubric(rubric)
        report = _grade(upload, tests=tests, model=model, device=device, seed=seed, checks_dir=checks_dir,
                        rubric=rubric)
    except (RubricError, SubmissionError) as error:
        report = failure_report(tests, str(error))
    except Exception as error:  # the grader's own failure: still a complete, valid report
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
        report = failure_report(tests, f"Internal grader error (not a fault of your submission): "
                                       f"{type(error).__name__}: {error}\n{detail}")
    report.execution_time = time.monotonic() - start
    if results_path is not None:
        write_results(report, results_path)
    return report


def _grade(upload: Path, *, tests, model, device, seed, checks_dir, rubric) -> GradingReport:
    seed = submission_seed(upload) if seed is None else seed
    model_dir, model_text, device = _resolve_model(model, device) if _needs_model(tests) else (None, "", device)
    with Sandbox(upload, model_dir=model_dir, device=device) as sandbox:
        # The rubric file itself, not its folder: a rubric in /tmp must not make /tmp owner-only.
        isolation.protect([*TRUSTED_FOLDERS, checks_dir, Path(rubric).resolve()], sandbox.identity)
        plugin = GradingPlugin(tests=tests, sandbox=sandbox, seed=seed, data_files=data_files(rubric))
        args = [str(checks_dir), "-p", "no:cacheprovider", "-p", "no:randomly", "--import-mode=importlib",
                "-q", "--no-header", "-o", "console_output_style=classic", "--rootdir", str(checks_dir),
                "-c", os.devnull]
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # pytest's own report is for debugging only
            pytest.main(args, plugins=[plugin])
        notes = [f"Graded {sandbox.layout}: {', '.join(sandbox.files)}",
                 f"Seed {seed} (rerun with --seed {seed} to draw the same instances)"]
        if model_text:
            notes.append(f"Model: {model_text} on {device}")
        if plugin.problems:
            notes.append("Grader configuration problems: " + "; ".join(plugin.problems))
        return GradingReport(results=plugin.rows(), seed=seed, model=model_text, device=device, notes=notes)
