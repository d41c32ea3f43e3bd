"""Grading one submission: rubric, sandbox, checks, report.

``grade()`` is what the CLI and ``run_autograder`` call. It never raises for a bad submission
or a failing grader: the report it returns (and the results.json it writes) always has a row for
every rubric test, and a failure of the grader itself becomes a row saying so. A grader-side
failure confined to one part (no model for P6) costs only that part's rows, which say why.

The one exception it lets through is an interrupt: Ctrl-C (KeyboardInterrupt, or SIGTERM turned
into one by the CLI) stops grading at once, cleans up the sandbox, writes nothing and raises
``GradingInterrupted``. pytest.main swallows KeyboardInterrupt and returns
``ExitCode.INTERRUPTED``; that code is turned back into the exception here, so an interrupted
run can never be mistaken for a finished one.
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

from . import calibration
from .grading import GradingPlugin
from .results import GradingReport, failure_report, reserve_results, write_results
from .registry import REPO_ROOT, Problem, builtin_problems
from .rubric import (DEFAULT_RUBRIC, GradedTest, RubricError, RubricSettings, data_files, load_rubric, rubric_problems,
                     rubric_settings)
from .sandbox import Sandbox
from .uploads import (SubmissionError, did_you_mean, links_note, locate_submission, misnamed_files, read_upload_file,
                      submission_files, upload_notes)

FILES_SHOWN = 20  # files of the upload named in the report (results.json stays small whatever the upload)
# Folders the child's user must not read: the grader, the reference, the project's tests.
TRUSTED_FOLDERS = (REPO_ROOT / "autograder", REPO_ROOT / "reference", REPO_ROOT / "tests")


def submission_seed(upload: Path) -> int:
    """The default seed: a hash of the submission's Python files, so regrading the same files
    draws the same instances, and changing a file to fit the drawn instances draws new ones."""
    source, _ = locate_submission(upload)
    digest = hashlib.sha256()
    for relative in submission_files(source)[0]:  # what is graded: links are never followed
        digest.update(relative.as_posix().encode() + b"\0" + read_upload_file(source / relative) + b"\0")
    return int.from_bytes(digest.digest()[:4], "big")


class GradingInterrupted(KeyboardInterrupt):
    """Grading was interrupted (Ctrl-C, SIGTERM): nothing was written; not a result."""


def select_tests(tests: list[GradedTest], parts: list[str] | None = None, *,
                 include_hidden: bool = True) -> tuple[list[GradedTest], list[GradedTest]]:
    """(tests to run, tests left out) for ``--part`` selections and self-checks.

    parts: ``p3`` selects p3a, p3b and p3c; ``p3a`` only p3a (also ``3``, ``P3``); None: all.
    include_hidden: False leaves out tests students do not see before the due date.
    Raises ValueError naming the parts the rubric does not have.
    """
    wanted = None
    if parts:
        wanted = {("p" + p.strip().lower().lstrip("p")) for part in parts for p in part.split(",") if p.strip()}
        known = {t.part for t in tests}
        unknown = sorted(w for w in wanted if not any(k == w or (k.startswith(w) and k[len(w):].isalpha()) for k in known))
        if unknown:
            raise ValueError(f"no part {', '.join(unknown)} in the rubric; parts are {', '.join(sorted(known))}")
    run, left = [], []
    for t in tests:
        chosen = wanted is None or any(t.part == w or (t.part.startswith(w) and t.part[len(w):].isalpha())
                                       for w in wanted)
        (run if chosen and (include_hidden or not t.hidden) else left).append(t)
    return run, left


def _resolve_model(spec: str | None, device: str) -> tuple[Path | None, str, str]:
    """(model folder, description, device) for P6, resolving the default and ``auto``."""
    from . import models
    spec = spec or models.default_model_spec()
    model_dir = models.resolve_model(spec)
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model_dir, f"{spec} ({model_dir}, fingerprint {models.fingerprint(model_dir)})", device


def _exposed(paths, sandbox: Sandbox) -> list[str]:
    """Of ``paths``, those the sandbox's user may read: only where it runs as a separate user
    without a private filesystem (namespaces refused), and only by the permission bits for others.
    None where the fork server never started (no student code ran; the rows say why)."""
    filesystem = sandbox.launcher_report.get("isolation", {}).get("filesystem")
    if not sandbox.identity.separate or filesystem in (None, "private"):
        return []
    return [str(p) for p in map(Path, paths) if p.exists() and p.stat().st_mode & 0o004]


def grade(upload: Path | str, *, model: str | None = None, device: str = "cpu", seed: int | None = None,
          rubric: Path | str = DEFAULT_RUBRIC, results_path: Path | str | None = None,
          checks_dir: Path | None = None, parts: list[str] | None = None, include_hidden: bool = True,
          on_result=None) -> GradingReport:
    """Grade the submission in ``upload`` and return the report; write results.json if asked.

    upload: a folder with a ``submission/`` package or the files loose.
    model: ``tiny``, ``gpt2`` or a checkpoint folder; None takes the prepared default.
    device: ``cpu``, ``cuda`` or ``auto`` for the child processes.
    seed: the seed random instances are drawn from; None derives it from the files.
    parts, include_hidden: which rubric tests run (see ``select_tests``); the others are listed
        in the report's ``not_run``.
    on_result: called with each TestResult as soon as its test finishes.
    Raises GradingInterrupted (a KeyboardInterrupt) when interrupted, having written nothing.
    """
    start = time.monotonic()
    upload = Path(upload)
    tests: list[GradedTest] = []
    not_run: list[GradedTest] = []
    reserved = reserve_results(results_path) if results_path is not None else None
    try:
        tests, not_run = select_tests(load_rubric(rubric), parts, include_hidden=include_hidden)
        settings = rubric_settings(rubric)
        known = rubric_problems(rubric)
        seed = submission_seed(upload) if seed is None else seed
        model_dir, model_text, device, no_model = _model_or_reason(tests, known, model, device)
        extra = [p.folder for p in known if p not in builtin_problems()]
        report = grade_tests(upload, tests=tests, model_dir=model_dir, device=device, seed=seed,
                             files=data_files(rubric), time_budget_s=settings.time_budget_s, settings=settings,
                             checks_dir=checks_dir, problems=known, guarded=[Path(rubric).resolve(), *extra],
                             on_result=on_result,
                             left_out={t.test_id for t in not_run},
                             not_graded={t.test_id: no_model for t in tests if no_model and t.needs_model})
        if model_text:
            report.model = model_text
            report.notes.insert(2, f"Model: {model_text} on {device}")
        if no_model:
            report.notes.append(f"{_model_problems(tests, known)}'s model tests not graded: {no_model}")
    except SubmissionError as error:
        report = failure_report(tests, str(error), status="rejected")
    except RubricError as error:
        report = failure_report(tests, str(error))
    except Exception as error:  # the grader's own failure: still a complete, valid report
        report = failure_report(tests, "Internal grader error (not a fault of your submission; please tell the "
                                       "course staff, who can see what went wrong).")
        report.diagnostics = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except BaseException:  # interrupted: nothing is written, the reserved space is given back
        if reserved is not None:
            reserved.unlink(missing_ok=True)
        raise
    report.not_run = not_run
    report.execution_time = time.monotonic() - start
    if results_path is not None:
        write_results(report, results_path, reserved=reserved)
    elif reserved is not None:
        reserved.unlink(missing_ok=True)
    return report


def _model_problems(tests, known) -> str:
    """The problems whose tests among ``tests`` run the model, as students name them ("P6")."""
    return ", ".join(p.name.upper() for p in known if any(t.needs_model and t.part in p.parts for t in tests))


def _model_or_reason(tests, known, model, device) -> tuple[Path | None, str, str, str | None]:
    """(model folder, description, device, None) when a test needs the model, or (None, "",
    device, why not) when the grader cannot provide it: those tests' rows then say why and the
    others are graded as usual."""
    if not any(t.needs_model for t in tests):
        return None, "", device, None
    try:
        return (*_resolve_model(model, device), None)
    except Exception as error:  # ModelUnavailableError, a broken checkpoint: the grader's problem
        return None, "", device, (f"the grader could not prepare the model for {_model_problems(tests, known)} "
                                  f"(not a fault of your "
                                  f"submission; please tell the course staff): {error}")


def grade_tests(upload: Path, *, tests: list[GradedTest], model_dir: Path | None, device: str, seed: int,
                files: dict, time_budget_s: float | None, settings: RubricSettings | None = None,
                checks_dir: Path | None = None, problems: tuple[Problem, ...] | None = None, guarded=(),
                on_result=None, left_out=frozenset(), not_graded: dict | None = None) -> GradingReport:
    """Grade ``upload`` on ``tests`` (rubric entries) with a resolved model folder and seed.

    settings: the rubric's settings, to derive model tests' limits from the reference's
    measured time (calibration.py); None keeps every test's own limit (the calibration itself).
    problems: the registry's problems the rubric knows (None: the built-in ones); pytest runs the
    checks of those with a test in ``tests``, and the child gets their harnesses.
    checks_dir: a folder of checks to run instead (the project's tests use it).
    guarded: files besides the grader's folders the sandbox's user must not read (the rubric):
    where children see the host's files (no namespaces), the report warns about those that
    permissions leave readable (prepare-sandbox, run by setup.sh as root, protects them).
    on_result, left_out, not_graded: see GradingPlugin.
    Raises GradingInterrupted when interrupted (pytest reports it as an exit code).
    """
    notes, reference_seconds = [], {}
    problems = builtin_problems() if problems is None else problems
    if settings is not None and model_dir is not None:
        reference_seconds, notes = calibration.reference_seconds(tests, model_dir=model_dir, device=device,
                                                                 files=files, problems=problems)
        tests = calibration.with_limits(tests, reference_seconds, factor=settings.model_timeout_factor,
                                        minimum=settings.model_timeout_minimum_s)
    parts = {t.part for t in tests}
    targets = [checks_dir] if checks_dir is not None else [p.folder for p in problems if parts & set(p.parts)]
    with Sandbox(upload, model_dir=model_dir, device=device, problems=problems) as sandbox:
        if not targets:  # no test to run: pytest must not collect its working directory instead
            targets = [sandbox.root / "no-checks"]
            targets[0].mkdir()
        source, _ = locate_submission(upload)
        hints = {name: did_you_mean(name, found) for name, found in misnamed_files(source).items()}
        plugin = GradingPlugin(tests=tests, sandbox=sandbox, seed=seed, data_files=files,
                               reference_seconds=reference_seconds, time_budget_s=time_budget_s,
                               not_graded=not_graded, hints=hints, on_result=on_result, left_out=left_out)
        # --capture=sys: pytest must not take over file descriptor 1, where live rows are printed
        args = [*map(str, targets), "-p", "no:cacheprovider", "-p", "no:randomly", "--import-mode=importlib",
                "-q", "--no-header", "-o", "console_output_style=classic",
                "--rootdir", os.path.commonpath([str(p) for p in targets]),
                "--capture=sys", "-c", os.devnull]
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # pytest's own report is for debugging only
            exit_code = pytest.main(args, plugins=[plugin])
        if exit_code == pytest.ExitCode.INTERRUPTED:
            raise GradingInterrupted()
        shown = ", ".join(name[:60] for name in sandbox.files[:FILES_SHOWN])
        more = f" and {len(sandbox.files) - FILES_SHOWN} more" if len(sandbox.files) > FILES_SHOWN else ""
        notes = [f"Graded {sandbox.layout}: {shown}{more}",
                 f"Seed {seed} (rerun with --seed {seed} to draw the same instances)", *upload_notes(source),
                 *links_note(sandbox.ignored), *notes]
        if plugin.problems:
            notes.append("Grader configuration problems: " + "; ".join(plugin.problems))
        exposed = _exposed([*TRUSTED_FOLDERS, *targets, *guarded, *files.values()], sandbox)
        if exposed:
            notes.append(f"Warning: student code could read {', '.join(exposed)} (this system gives it no private "
                         f"filesystem): run `python -m autograder prepare-sandbox` as root")
        rows = plugin.rows()
        status = "grader_error" if any(r.grader_fault for r in rows) else "graded"
        diagnostics = "\n\n".join(plugin.diagnostics)
        if diagnostics:
            diagnostics += f"\n\npytest's log:\n{log.getvalue()[-20000:]}"
        return GradingReport(results=rows, seed=seed, device=device, notes=notes, status=status,
                             launcher=sandbox.launcher_report, diagnostics=diagnostics)
