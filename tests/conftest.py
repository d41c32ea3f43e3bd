"""Shared helpers for the project's tests: build submissions from the reference with some files
replaced, grade them in-process, and read the rows back."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from autograder.rubric import DEFAULT_RUBRIC, load_rubric
from autograder.runner import grade

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "reference"
TEMPLATE = REPO / "student_template"
COURSE_DATA = REPO.parent / "shared" / "data" / "course"


def make_submission(root: Path, files: dict[str, str] | None = None, *, base: Path | None = REFERENCE,
                    layout: str = "package", drop: tuple[str, ...] = ()) -> Path:
    """A submission folder under ``root``: the .py files of ``base``'s submission package, with
    ``files`` (name -> source, dedented) added or replacing, and ``drop`` removed.
    layout "package" puts them in root/submission/, "loose" directly in root."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / "submission" if layout == "package" else root
    target.mkdir(exist_ok=True)
    if base is not None:
        for path in (base / "submission").glob("*.py"):
            if path.name not in drop and not (layout == "loose" and path.name == "__init__.py"):
                shutil.copyfile(path, target / path.name)
    for name, source in (files or {}).items():
        (target / name).write_text(textwrap.dedent(source).lstrip("\n"))
    return root


class Graded:
    """A grading run's report and results.json, with lookups by rubric test id."""

    def __init__(self, report, results_path: Path):
        self.report = report
        self.json = json.loads(results_path.read_text())
        self.rows = {r.test.test_id: r for r in report.results}

    def score(self, test_id: str) -> float:
        return self.rows[test_id].score

    def output(self, test_id: str) -> str:
        return self.rows[test_id].output

    def failed(self) -> set[str]:
        return {test_id for test_id, row in self.rows.items() if not row.passed}


@pytest.fixture
def grade_submission(tmp_path):
    """grade_submission(folder, **grade_kwargs) -> Graded, with results.json in tmp_path."""
    counter = iter(range(1000))

    def run(folder: Path, **kwargs) -> Graded:
        results = tmp_path / f"results-{next(counter)}.json"
        kwargs.setdefault("seed", 12345)
        return Graded(grade(folder, results_path=results, **kwargs), results)
    return run


@pytest.fixture(scope="session")
def rubric_ids() -> list[str]:
    return [t.test_id for t in load_rubric()]


def ids_of_part(rubric_ids: list[str], *parts: str) -> set[str]:
    return {t for t in rubric_ids if t.split("_")[0] in parts}


def rubric_of_parts(path: Path, *parts: str) -> Path:
    """Write to ``path`` a rubric holding only the real rubric's tests of ``parts`` (parts such as
    "p1", "p5a", or single test ids such as "p5a_public"), with their points and timeouts, so a
    mutant test grades only its own problem."""
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text(encoding="utf-8"))
    data["tests"] = {test_id: entry for test_id, entry in data["tests"].items()
                     if entry["part"] in parts or test_id in parts}
    assert data["tests"], f"no rubric tests for {parts}"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
