"""Run the project's test suite several times in a row and say whether every run gave the same
result, optionally with gradings of the reference running in a loop beside it (the busy machine
an instructor's or a batch's other gradings make).

    .venv/bin/python scripts/suite_runs.py [--runs 3] [--with-grading] [-- PYTEST_ARGS...]

Each run is ``python -m pytest -p no:cacheprovider`` (so no run reorders tests by the last one's
failures) with ``--junitxml`` into a temporary folder; the outcome of every test is read from it.
Prints, per run, the wall time, the counts and the tests whose outcome differs from the first
run's; exits 1 when any run failed a test or the runs disagree. With --with-grading, ``python -m
autograder grade reference`` runs back to back beside the suite (on the tiny model) and the
number of gradings finished and the load average are printed too.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed, failed, error or skipped, from a junit XML report."""
    result = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        result[name] = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        result[name] = {"failure": "failed"}.get(result[name], result[name])
    return result


class GradingLoop(threading.Thread):
    """`python -m autograder grade reference` back to back until stopped."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.finished, self.failed = folder, 0, 0
        self.stopping = threading.Event()
        self.process = None

    def run(self):
        while not self.stopping.is_set():
            self.process = subprocess.Popen(
                [str(PYTHON), "-m", "autograder", "grade", "reference", "--model", "tiny",
                 "--results", str(self.folder / "results.json")],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            code = self.process.wait()
            if not self.stopping.is_set():
                self.finished += 1
                self.failed += code != 0

    def stop(self):
        self.stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        self.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--with-grading", action="store_true",
                        help="grade the reference in a loop beside the suite")
    parser.add_argument("pytest_args", nargs="*", help="more arguments for pytest (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="suite-runs-") as tmp:
        tmp = Path(tmp)
        loop = GradingLoop(tmp) if args.with_grading else None
        if loop:
            loop.start()
        runs = []
        try:
            for index in range(args.runs):
                junit = tmp / f"run-{index}.xml"
                start = time.monotonic()
                code = subprocess.call([str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                        f"--junitxml={junit}", *args.pytest_args], cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall = time.monotonic() - start
                result = outcomes(junit) if junit.exists() else {}
                runs.append((code, wall, result, os.getloadavg()[0]))
                counts = {kind: sum(1 for v in result.values() if v == kind)
                          for kind in ("passed", "failed", "error", "skipped")}
                differs = sorted(t for t in set(result) | set(runs[0][2])
                                 if result.get(t) != runs[0][2].get(t))
                print(f"run {index + 1}: {wall:.0f} s, exit {code}, "
                      + ", ".join(f"{n} {k}" for k, n in counts.items())
                      + f", load {runs[-1][3]:.1f}"
                      + (f", differs from run 1 in {len(differs)}: {differs[:5]}" if differs else ""),
                      flush=True)
                for test, outcome in sorted(result.items()):
                    if outcome in ("failed", "error"):
                        print(f"    {outcome}: {test}")
        finally:
            if loop:
                loop.stop()
                print(f"gradings beside the suite: {loop.finished} finished, {loop.failed} exited non-zero")
    same = all(r[2] == runs[0][2] for r in runs)
    clean = all(r[0] == 0 for r in runs)
    print("every run passed and all agree" if same and clean else
          "runs " + ("disagree" if not same else "agree") + ("" if clean else "; some failed"))
    return 0 if same and clean else 1


if __name__ == "__main__":
    sys.exit(main())
