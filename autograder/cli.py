"""Command line: parses arguments, checks them, and calls the functions that do the work.

    python -m autograder grade PATH [--part P] [--model tiny|gpt2|DIR] [--device cpu|cuda|auto]
                                    [--results FILE] [--seed N] [--rubric FILE] [--feedback]
    python -m autograder check [PATH] [--part P] [--model ...] [--device ...] [--seed N] [--results FILE]
    python -m autograder batch DIR [--jobs N] [--out OUT] [--shard I/N] [--force] [--timeout S]
                                   [--model ...] [--device ...] [--seed N] [--rubric FILE] [--no-progress]
    python -m autograder merge OUT [OUT ...] [--out DEST]
    python -m autograder package [--out autograder.zip]
    python -m autograder prepare-model [--no-gpt2] [--model ...] [--device ...]
    python -m autograder prepare-sandbox
    python -m autograder plots [--submission PATH] [--model ...] [--device ...] [--out DIR] [--rubric FILE]

Settings come from the command line, else from environment variables (AUTOGRADER_MODEL,
AUTOGRADER_DEVICE, AUTOGRADER_RUBRIC), else from defaults.

Exit status: 0 done (whatever the score); 1 the upload could not be graded, or the grader failed
on some tests (results are written all the same); for batch, the grading of some submission
timed out, crashed or failed in the grader (rejected uploads do not count; results and tables are
written all the same); 2 a usage error (a missing PATH, a model that is not there, CUDA asked for
without CUDA, an unknown part), found before any grading and reported in one line; 130
interrupted by Ctrl-C (143 by SIGTERM), with nothing graded written.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from .rubric import DEFAULT_RUBRIC

GRADESCOPE_MODEL = "gpt2"  # what the Gradescope package's setup.sh prepares


class UsageError(Exception):
    """A command line that cannot work; reported in one line, exit status 2."""


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="tiny | gpt2 | a checkpoint folder (default: $AUTOGRADER_MODEL, else gpt2 if setup.sh "
                             "fetched it, else tiny)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default=os.environ.get("AUTOGRADER_DEVICE", "cpu"),
                        help="device for the model in P6 (default cpu)")


def _rubric_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rubric", type=Path, default=Path(os.environ.get("AUTOGRADER_RUBRIC", DEFAULT_RUBRIC)),
                        help="rubric YAML (default autograder/rubric.yaml)")


def _grading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--part", action="append", default=None, metavar="P",
                        help="grade only these parts: p3 (all of P3), p3a, or a comma-separated list; repeatable")
    _model_options(parser)
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for random instances (default: derived from the submission's files)")
    _rubric_option(parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="Grade problem set 1 submissions.")
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade one submission and write a Gradescope results.json")
    grade.add_argument("path", type=Path, help="folder holding a submission/ package or the files loose")
    _grading_options(grade)
    grade.add_argument("--results", type=Path, default=Path("results/results.json"),
                       help="where to write results.json (default results/results.json)")
    grade.add_argument("--feedback", action="store_true", help="print each failure's feedback under its row")

    check = commands.add_parser("check", help="students: check your work with the public tests, feedback included")
    check.add_argument("path", type=Path, nargs="?", default=None,
                       help="your folder (holding submission/ or the files; default: the current folder, or "
                            "student_template/ when run in the autograder's own folder)")
    _grading_options(check)
    check.add_argument("--results", type=Path, default=None, help="also write a results.json here")

    batch = commands.add_parser("batch", help="grade a folder of submissions (or a Gradescope export) in parallel")
    batch.add_argument("dir", type=Path, help="one folder per submission, or a Gradescope export")
    batch.add_argument("--jobs", type=int, default=None,
                       help="parallel gradings (default: min(CPUs, available memory / 3 GiB with P6, 1 GiB without))")
    batch.add_argument("--out", type=Path, default=None, help="output folder (default results/batch-<DIR name>)")
    batch.add_argument("--shard", default=None, metavar="I/N", help="grade only shard I of N (see merge)")
    batch.add_argument("--force", action="store_true", help="regrade submissions already graded")
    batch.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="wall-clock limit of one grading (default: the rubric's time_budget, else the sum of "
                            "its per-test limits, + 120 s)")
    _model_options(batch)
    batch.add_argument("--seed", type=int, default=None, help="one seed for every submission (default: per submission)")
    _rubric_option(batch)
    batch.add_argument("--no-progress", action="store_true",
                       help="no progress bar: a line per submission as it finishes instead (for logs)")

    merge = commands.add_parser("merge", help="join the outputs of batch --shard runs into one scores.csv")
    merge.add_argument("folders", type=Path, nargs="+", help="the shards' output folders (or one shared folder)")
    merge.add_argument("--out", type=Path, default=None, help="where to write the tables (default: the first folder)")

    package = commands.add_parser("package", help="build the zip to upload to Gradescope as the autograder")
    package.add_argument("--out", type=Path, default=Path("autograder.zip"), help="the zip (default autograder.zip)")

    commands.add_parser("prepare-sandbox", help="as root: create the sandbox user and check it can run Python")
    prepare = commands.add_parser("prepare-model", help="fetch GPT-2 if the network allows; build the tiny model and "
                                                        "the P6 reference outputs for the default model")
    prepare.add_argument("--no-gpt2", action="store_true", help="do not try to fetch GPT-2 from the hub")
    _model_options(prepare)
    _rubric_option(prepare)

    plots = commands.add_parser("plots", help="histograms of log-likelihoods per dataset (the course's figure), as PNGs")
    plots.add_argument("--submission", type=Path, default=None,
                       help="score with this submission's log_likelihood (default: the reference's)")
    _model_options(plots)
    plots.add_argument("--out", type=Path, default=Path("plots"), help="folder for the PNG files (default plots/)")
    plots.add_argument("--rubric", type=Path, default=Path(os.environ.get("AUTOGRADER_RUBRIC", DEFAULT_RUBRIC)),
                       help="rubric YAML whose data: section names the course's files (or set AUTOGRADER_DATA_DIR)")
    return parser


# -- interrupts ------------------------------------------------------------------------------
_SIGNALLED: list[int] = []


def _interrupt(signum, _frame):
    """SIGINT or SIGTERM: raise KeyboardInterrupt once; further signals are ignored while the
    command cleans up (killing its processes, removing its temporary folders)."""
    _SIGNALLED.append(signum)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _install_interrupt_handlers() -> None:
    # A SIGINT already ignored (a background job of a non-interactive shell) stays ignored.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupted_status() -> int:
    return 128 + (_SIGNALLED[0] if _SIGNALLED else signal.SIGINT)


# -- checks before grading -------------------------------------------------------------------
def _check_model(spec: str | None) -> None:
    """A --model given on the command line must name a model that is there."""
    if spec is None:
        return
    from . import models
    if spec == models.TINY:
        return
    if spec == models.GPT2:
        if not models.is_prepared(models.models_root() / models.GPT2):
            raise UsageError(f"--model gpt2: GPT-2 small was not fetched (run `bash setup.sh` where the network "
                             f"reaches huggingface.co, or use --model tiny)")
        return
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--model {spec}: not 'tiny', 'gpt2' or an existing folder")
    if not (folder / "config.json").is_file():
        raise UsageError(f"--model {spec}: not a model folder (no config.json)")


def _check_device(device: str) -> None:
    """CUDA asked for must be there. Asked in a separate process: the grader never imports torch."""
    if device != "cuda":
        return
    from importlib import metadata
    try:
        if metadata.version("torch").endswith("+cpu"):  # the CPU build says so in its version: no need to load it
            raise UsageError(f"--device cuda: this torch ({metadata.version('torch')}) is a CPU-only build "
                             f"(setup.sh installs the CPU build unless AUTOGRADER_TORCH=cuda); use --device cpu")
    except metadata.PackageNotFoundError:
        raise UsageError("--device cuda: torch is not installed (run setup.sh)") from None
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.version.cuda, torch.cuda.is_available())"],
                           capture_output=True, text=True)
    version, _, available = probe.stdout.strip().partition(" ")
    if probe.returncode != 0:
        raise UsageError(f"--device cuda: torch cannot be imported ({probe.stderr.strip().splitlines()[-1:]})")
    if version == "None":
        raise UsageError("--device cuda: this torch is a CPU-only build (setup.sh installs the CPU build unless "
                         "AUTOGRADER_TORCH=cuda); use --device cpu")
    if available != "True":
        raise UsageError("--device cuda: no CUDA device is visible here; use --device cpu")


def _check_parts(parts: list[str] | None, rubric: Path) -> None:
    if not parts:
        return
    from .rubric import RubricError, load_rubric
    from .runner import select_tests
    try:
        tests = load_rubric(rubric)
    except RubricError:
        return  # grading reports the rubric's error in results.json
    try:
        select_tests(tests, parts)
    except ValueError as error:
        raise UsageError(f"--part: {error}") from None


def _default_check_path() -> Path:
    """The current folder; in the autograder's own folder (which holds the reference and the
    template), the template a student edits in place."""
    here = Path.cwd()
    repo = Path(__file__).resolve().parents[1]
    return repo / "student_template" if here.resolve() == repo else here


def _check_grading_args(args) -> None:
    if args.path is None:
        args.path = _default_check_path()
    if not args.path.exists():
        raise UsageError(f"{args.path}: no such folder")
    if not args.path.is_dir():
        raise UsageError(f"{args.path}: not a folder (give the folder holding your submission)")
    _check_parts(args.part, args.rubric)
    _check_model(args.model)
    _check_device(args.device)


# -- commands --------------------------------------------------------------------------------
def _model_note(args, tests) -> str | None:
    """Says when P6 is checked with another model than the one Gradescope grades with."""
    from . import models
    if not any(t.needs_model for t in tests):
        return None
    spec = args.model or os.environ.get("AUTOGRADER_MODEL") or models.default_model_spec()
    if spec == GRADESCOPE_MODEL:
        return None
    what = "the tiny test model (a small random GPT-2)" if spec == models.TINY else f"the model in {spec}"
    return (f"Note: P6 is checked here with {what}; Gradescope grades P6 with GPT-2 small, so P6's verdicts "
            f"there may differ from these. `bash setup.sh` on a machine that reaches huggingface.co fetches it.")


def _grade(args, *, student: bool) -> int:
    """grade and check: rows printed as tests finish, then the total and notes."""
    from .results import TablePrinter
    from .rubric import RubricError, load_rubric
    from .runner import grade, select_tests
    _check_grading_args(args)
    try:
        tests, _ = select_tests(load_rubric(args.rubric), args.part, include_hidden=not student)
    except RubricError:
        tests = []
    out = sys.stdout
    note = _model_note(args, tests) if student else None
    printer = TablePrinter(tests, out, feedback=student or args.feedback)  # every line below goes through it
    if note:
        printer.say(note)
    printer.say(f"{'Checking' if student else 'Grading'} {args.path} …")
    printer.header()
    report = grade(args.path, model=args.model or os.environ.get("AUTOGRADER_MODEL"), device=args.device,
                   seed=args.seed, rubric=args.rubric, results_path=args.results, parts=args.part,
                   include_hidden=not student, on_result=printer.row)
    printer.finish(report)
    hidden = [t for t in report.not_run if t.hidden]
    if student and hidden:
        tests_text = "1 hidden test" if len(hidden) == 1 else f"{len(hidden)} hidden tests"
        printer.say(f"{tests_text} ({sum(t.weight for t in hidden):g} points) graded on Gradescope only: counted "
                    f"there, not run or shown here.")
    printer.say("\n".join(report.notes))  # the upload's file names are the student's
    if args.results is not None:
        printer.say(f"results written to {args.results}")
    return 0 if report.status == "graded" else 1


def _batch(args) -> int:
    from .batch import Batch, BatchError, parse_shard
    from .scores import FAILED
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as error:
        raise UsageError(f"--shard: {error}") from None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs: at least 1")
    _check_model(args.model)
    _check_device(args.device)
    out = args.out or Path("results") / f"batch-{args.dir.resolve().name}"
    try:
        batch = Batch(args.dir, out, jobs=args.jobs, shard=shard, force=args.force, model=args.model,
                      device=args.device, seed=args.seed, rubric=args.rubric, timeout_s=args.timeout,
                      progress=not args.no_progress)
    except BatchError as error:
        raise UsageError(str(error)) from None
    records = batch.run()
    print(batch.tables(records))
    failed = [r for r in records if r.status in FAILED]
    if failed:
        print(f"{len(failed)} of {len(records)} gradings failed (timed out, crashed or failed in the grader; see "
              f"each one's grade.log): run the same command again to grade them again", file=sys.stderr)
    return 1 if failed else 0


def _merge(args) -> int:
    from .scores import MergeError, merge
    for folder in args.folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such folder")
    try:
        print(merge(args.folders, args.out or args.folders[0]))
    except MergeError as error:
        print(f"merge: {error}", file=sys.stderr)
        return 1
    print(f"wrote scores.csv, summary.csv and totals.png in {args.out or args.folders[0]}")
    return 0


def _plots(args) -> int:
    from .registry import HookError
    from .rubric import RubricError, data_files, rubric_problems
    _check_model(args.model)
    _check_device(args.device)
    if args.submission is not None and not args.submission.is_dir():
        raise UsageError(f"--submission {args.submission}: no such folder")
    written = []
    try:
        for problem in rubric_problems(args.rubric):  # each problem with figures of its own (P6's histograms)
            if problem.plots is not None:
                written += problem.plots(submission=args.submission,
                                         model=args.model or os.environ.get("AUTOGRADER_MODEL"), device=args.device,
                                         out=args.out, data_files=data_files(args.rubric),
                                         say=lambda line: print(line, file=sys.stderr))
    except (HookError, RubricError) as error:
        print(f"plots: {error}", file=sys.stderr)
        return 1
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def _prepare_sandbox() -> int:
    from .isolation import prepare_sandbox_user
    from .rubric import RubricError, data_files
    from .runner import TRUSTED_FOLDERS
    rubric = Path(os.environ.get("AUTOGRADER_RUBRIC", DEFAULT_RUBRIC))
    try:  # the course's data files too: with GPT-2, they would tell snippets apart
        data = list(data_files(rubric).values())
    except RubricError:
        data = []
    print(prepare_sandbox_user([*TRUSTED_FOLDERS, rubric, *data]))
    return 0


def _prepare_model(args) -> int:
    from . import models
    from .rubric import data_files, load_rubric, rubric_problems
    if args.model is None and args.device == "cpu":
        print(models.prepare(want_gpt2=not args.no_gpt2))
        for problem in rubric_problems(args.rubric):  # P6's reference outputs for the default model
            if problem.prepare_default is not None:
                print(problem.prepare_default(rubric=args.rubric))
        return 0
    # batch: what the model problems prepare (P6's reference outputs) and the model tests' time
    # limits (the calibration) for the model and device it grades with, once, before parallel
    # gradings would each wait for them
    _check_model(args.model)
    from . import calibration
    spec = args.model or models.default_model_spec()
    model_dir, files, tests = models.resolve_model(spec), data_files(args.rubric), load_rubric(args.rubric)
    known = rubric_problems(args.rubric)
    cache = calibration.prepared_cache(tests, model_dir=model_dir, device=args.device, files=files, problems=known)
    _, notes = calibration.reference_seconds(tests, model_dir=model_dir, device=args.device, files=files,
                                             problems=known)
    print("\n".join([*notes, f"Reference outputs and time limits for {spec} on {args.device}: {cache}"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _install_interrupt_handlers()
    try:
        if args.command in ("grade", "check"):
            return _grade(args, student=args.command == "check")
        if args.command == "batch":
            return _batch(args)
        if args.command == "merge":
            return _merge(args)
        if args.command == "package":
            from .package import PackageError, build_package
            try:
                print(build_package(args.out))
            except PackageError as error:
                print(f"package: {error}", file=sys.stderr)
                return 1
            return 0
        if args.command == "plots":
            return _plots(args)
        if args.command == "prepare-sandbox":
            return _prepare_sandbox()
        if args.command == "prepare-model":
            return _prepare_model(args)
    except UsageError as error:
        print(f"python -m autograder {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _after_interrupt(args)
        return _interrupted_status()
    return 2


def _after_interrupt(args) -> None:
    """Nothing graded was written; a results file from an earlier run would look like this
    run's, so it goes too."""
    message = "interrupted: stopped, temporary folders removed, no results written"
    results = getattr(args, "results", None)
    if args.command in ("grade", "check") and results is not None and Path(results).exists():
        Path(results).unlink()
        message += f" (removed the earlier {results})"
    if args.command == "batch":
        message += "; run the same command again to resume"
    print(f"\n{message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
