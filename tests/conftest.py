"""Shared helpers for the project's tests: build submissions from the reference with some files
replaced, grade them in-process, and read the rows back; gradings shared by a whole session
(``shared_gradings``: the reference on the whole rubric, the mutants of tests/mutants)."""
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


pytest_plugins = ["pytester"]  # tests/test_grading_plugin.py runs the grading plugin in pytest of its own

SEED = 12345  # every shared grading's seed (as grade_submission's)
MUTANT_NAMES = pytest.StashKey[set]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Remember which mutants this session runs (after -k and -m deselected the others), so a
    shared grading holds only those."""
    config.stash[MUTANT_NAMES] = {item.callspec.params["name"] for item in items
                                  if getattr(item, "originalname", "") == "test_mutant"}


class SharedGradings:
    """Gradings that several tests of a session read: each one graded once (per xdist worker).

    grading(files, parts, course_data): the reference submission with ``files`` replacing its
    own, graded on the real rubric's tests of ``parts`` (None: the whole rubric), on the tiny
    model, seed SEED; with course_data, the course's data files (when they are here) join P6's
    pools, as AUTOGRADER_DATA_DIR makes them.
    mutant(name): the grading that holds the table mutant ``name`` (tests/mutants), with the
    other mutants of its planned group that this session runs, and the course's data.
    """

    def __init__(self, folder: Path, selected: set):
        from mutants import plan
        from mutants.table import TABLE
        self.folder = folder
        self.table = {m.name: m for m in TABLE}
        self.groups = plan(TABLE)
        self.selected = selected
        self._done: dict = {}

    def grading(self, files: dict | None = None, parts: tuple | None = None, *, course_data: bool = False) -> "Graded":
        files = dict(files or {})
        course_data = course_data and COURSE_DATA.is_dir()
        key = (tuple(sorted(files.items())), tuple(sorted(parts)) if parts else None, course_data)
        if key not in self._done:
            index = len(self._done)
            folder = make_submission(self.folder / f"submission-{index}", files)
            rubric = rubric_of_parts(self.folder / f"rubric-{index}.yaml", *key[1]) if parts else DEFAULT_RUBRIC
            results = self.folder / f"results-{index}.json"
            with pytest.MonkeyPatch.context() as patch:
                if course_data:
                    patch.setenv("AUTOGRADER_DATA_DIR", str(COURSE_DATA))
                else:
                    patch.delenv("AUTOGRADER_DATA_DIR", raising=False)
                report = grade(folder, rubric=rubric, model="tiny", seed=SEED, results_path=results)
            self._done[key] = Graded(report, results)
        return self._done[key]

    def mutant(self, name: str) -> "Graded":
        from mutants import combined_files
        group = [m for n, m in self.table.items() if self.groups[n] == self.groups[name]
                 and (n in self.selected or n == name)]
        files = combined_files(group)
        assert files is not None, f"the mutants of {self.groups[name]} cannot share a submission"
        return self.grading(files, tuple(part for m in group for part in m.parts), course_data=True)


@pytest.fixture(scope="session")
def shared_gradings(request, tmp_path_factory) -> SharedGradings:
    return SharedGradings(tmp_path_factory.mktemp("shared-gradings"), request.config.stash.get(MUTANT_NAMES, set()))
