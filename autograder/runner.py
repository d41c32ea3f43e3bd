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

from . import calibration, isolation
from .grading import GradingPlugin
from .results import GradingReport, failure_report, write_results
from .rubric import DEFAULT_RUBRIC, GradedTest, RubricError, RubricSettings, data_files, load_rubric, rubric_settings
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
        settings = rubric_settings(rubric)
        seed = submission_seed(upload) if seed is None else seed
        model_dir, model_text = None, ""
        if any(t.needs_model for t in tests):
            model_dir, model_text, device = _resolve_model(model, device)
        report = grade_tests(upload, tests=tests, model_dir=model_dir, device=device, seed=seed,
                             files=data_files(rubric), time_budget_s=settings.time_budget_s, settings=settings,
                             checks_dir=checks_dir, protect=[Path(rubric).resolve()])
        if model_text:
            report.model = model_text
            report.notes.insert(2, f"Model: {model_text} on {device}")
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


def grade_tests(upload: Path, *, tests: list[GradedTest], model_dir: Path | None, device: str, seed: int,
                files: dict, time_budget_s: float | None, settings: RubricSettings | None = None,
                checks_dir: Path = CHECKS_DIR, protect=()) -> GradingReport:
    """Grade ``upload`` on ``tests`` (rubric entries) with a resolved model folder and seed.

    settings: the rubric's settings, to derive model tests' limits from the reference's
    measured time (calibration.py); None keeps every test's own limit (the calibration itself).
    protect: files besides the grader's folders the sandbox's user must not read (the rubric).
    """
    notes, reference_seconds = [], {}
    if settings is not None and model_dir is not None:
        reference_seconds, notes = calibration.reference_seconds(tests, model_dir=model_dir, device=device,
                                                                 files=files)
        tests = calibration.with_limits(tests, reference_seconds, factor=settings.model_timeout_factor,
                                        minimum=settings.model_timeout_minimum_s)
    with Sandbox(upload, model_dir=model_dir, device=device) as sandbox:
        # The rubric file itself, not its folder: a rubric in /tmp must not make /tmp owner-only.
        isolation.protect([*TRUSTED_FOLDERS, checks_dir, *protect], sandbox.identity)
        plugin = GradingPlugin(tests=tests, sandbox=sandbox, seed=seed, data_files=files,
                               reference_seconds=reference_seconds, time_budget_s=time_budget_s)
        args = [str(checks_dir), "-p", "no:cacheprovider", "-p", "no:randomly", "--import-mode=importlib",
                "-q", "--no-header", "-o", "console_output_style=classic", "--rootdir", str(checks_dir),
                "-c", os.devnull]
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # pytest's own report is for debugging only
            pytest.main(args, plugins=[plugin])
        notes = [f"Graded {sandbox.layout}: {', '.join(sandbox.files)}",
                 f"Seed {seed} (rerun with --seed {seed} to draw the same instances)", *notes]
        if plugin.problems:
            notes.append("Grader configuration problems: " + "; ".join(plugin.problems))
        return GradingReport(results=plugin.rows(), seed=seed, device=device, notes=notes,
                             launcher=dict(sandbox.launcher.ready or {}))
