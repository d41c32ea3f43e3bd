"""Command line: parses arguments and calls the functions that do the work.

    python -m autograder grade PATH [--model tiny|gpt2|DIR] [--device cpu|cuda|auto]
                                    [--results FILE] [--seed N] [--rubric FILE]
    python -m autograder prepare-model [--no-gpt2]
    python -m autograder prepare-sandbox
    python -m autograder plots [--submission PATH] [--model tiny|gpt2|DIR] [--device cpu|cuda|auto]
                               [--out DIR] [--rubric FILE]

Settings come from the command line, else from environment variables (AUTOGRADER_MODEL,
AUTOGRADER_DEVICE, AUTOGRADER_RUBRIC), else from defaults.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .rubric import DEFAULT_RUBRIC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="Grade problem set 1 submissions.")
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade one submission and write a Gradescope results.json")
    grade.add_argument("path", type=Path, help="folder holding a submission/ package or the files loose")
    grade.add_argument("--model", default=os.environ.get("AUTOGRADER_MODEL"),
                       help="tiny | gpt2 | a checkpoint folder (default: gpt2 if setup.sh fetched it, else tiny)")
    grade.add_argument("--device", choices=["cpu", "cuda", "auto"], default=os.environ.get("AUTOGRADER_DEVICE", "cpu"),
                       help="device for the model in P6 (default cpu)")
    grade.add_argument("--results", type=Path, default=Path("results/results.json"),
                       help="where to write results.json (default results/results.json)")
    grade.add_argument("--seed", type=int, default=None,
                       help="seed for random instances (default: derived from the submission's files)")
    grade.add_argument("--rubric", type=Path, default=Path(os.environ.get("AUTOGRADER_RUBRIC", DEFAULT_RUBRIC)),
                       help="rubric YAML (default autograder/rubric.yaml)")

    commands.add_parser("prepare-sandbox", help="as root: create the sandbox user and check it can run Python")
    prepare = commands.add_parser("prepare-model", help="fetch GPT-2 if the network allows; build the tiny model and "
                                                        "the P6 reference cache for the default model")
    prepare.add_argument("--no-gpt2", action="store_true", help="do not try to fetch GPT-2 from the hub")

    plots = commands.add_parser("plots", help="histograms of log-likelihoods per dataset (the course's figure), as PNGs")
    plots.add_argument("--submission", type=Path, default=None,
                       help="score with this submission's log_likelihood (default: the reference's)")
    plots.add_argument("--model", default=os.environ.get("AUTOGRADER_MODEL"), help="tiny | gpt2 | a checkpoint folder")
    plots.add_argument("--device", choices=["cpu", "cuda", "auto"], default=os.environ.get("AUTOGRADER_DEVICE", "cpu"))
    plots.add_argument("--out", type=Path, default=Path("plots"), help="folder for the PNG files (default plots/)")
    plots.add_argument("--rubric", type=Path, default=Path(os.environ.get("AUTOGRADER_RUBRIC", DEFAULT_RUBRIC)),
                       help="rubric YAML whose data: section names the course's files (or set AUTOGRADER_DATA_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "grade":
        from .results import format_table
        from .runner import grade
        report = grade(args.path, model=args.model, device=args.device, seed=args.seed,
                       rubric=args.rubric, results_path=args.results)
        print("\n".join(report.notes))
        print(format_table(report))
        print(f"results written to {args.results}")
        return 0
    if args.command == "prepare-sandbox":
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
    if args.command == "plots":
        from .p6.plots import PlotError, make_plots
        from .rubric import data_files
        try:
            written = make_plots(submission=args.submission, model=args.model, device=args.device, out=args.out,
                                 data_files=data_files(args.rubric))
        except PlotError as error:
            print(f"plots: {error}", file=sys.stderr)
            return 1
        print("\n".join(f"wrote {path}" for path in written))
        return 0
    if args.command == "prepare-model":
        from .models import prepare
        from .p6.reference import prepare as prepare_reference
        print(prepare(want_gpt2=not args.no_gpt2))
        print(prepare_reference(rubric=Path(os.environ.get("AUTOGRADER_RUBRIC", DEFAULT_RUBRIC))))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
