"""The rubric: every graded test's part, points, visibility and time limit, from one YAML file.

``autograder/rubric.yaml`` is the only place points live; instructors edit it, never the code.
It is validated on load against ``SCHEMA`` (a JSON Schema, checked with ``jsonschema``), and an
error names the file and the key that is wrong, e.g.
``rubric.yaml: tests.p3a_public.weight: 'one' is not of type 'number'``.

An optional ``data:`` section names the course's data files P6 uses (``data_files``; the
folder in ``AUTOGRADER_DATA_DIR`` overrides it).

Field names follow gradescope-utils' decorators, whose attributes Gradescope's results use:
``weight`` (the points, results' ``max_score``), ``visibility``, ``number``, ``tags``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import jsonschema
import yaml

DEFAULT_RUBRIC = Path(__file__).with_name("rubric.yaml")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
PART_PATTERN = r"^p[1-6][a-h]?$"
DATA_NAMES = ("random", "shakespeare", "neurips", "snippets")  # the course's data files, by stem
DATA_DIR_ENV = "AUTOGRADER_DATA_DIR"

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tests"],
    "properties": {
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "description": "Values every test takes unless it sets its own.",
            "properties": {
                "visibility": {"enum": list(VISIBILITIES)},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            },
        },
        "time_budget": {
            "type": "number", "exclusiveMinimum": 0,
            "description": "Wall-clock seconds the whole grading of one submission may take (Gradescope stops "
                           "an autograder at its configured limit, 10 minutes by default, and then shows no "
                           "rows at all). A test that starts with less left than its own limit gets what is "
                           "left, so every row is still written.",
        },
        "model_timeouts": {
            "type": "object",
            "additionalProperties": False,
            "description": "Time limits of the tests that run the model (P6) and set no timeout of their own: "
                           "factor times the reference solution's measured time in that test, on the "
                           "configured model and device, and at least minimum seconds.",
            "properties": {
                "factor": {"type": "number", "minimum": 1},
                "minimum": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            },
        },
        "data": {
            "type": "object",
            "additionalProperties": False,
            "description": "The course's data files for P6 (paths relative to the rubric file, or absolute): "
                           "pickled dicts/lists of strings as the course ships them, or text files with one "
                           "string per line. AUTOGRADER_DATA_DIR (a folder with the course's file names) "
                           "overrides them.",
            "properties": {name: {"type": "string", "minLength": 1} for name in DATA_NAMES},
        },
        "tests": {
            "type": "object",
            "minProperties": 1,
            "description": "Graded tests by id; the id is the one a check in autograder/checks names.",
            "propertyNames": {"pattern": r"^p[1-6][a-h]?_[a-z0-9_]+$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["part", "name", "weight"],
                "properties": {
                    "part": {"type": "string", "pattern": PART_PATTERN,
                             "description": "Problem part, e.g. p3a: results name the test '[p3a] …'."},
                    "name": {"type": "string", "minLength": 1, "maxLength": 120,
                             "description": "What the test checks, shown to students."},
                    "weight": {"type": "number", "minimum": 0,
                               "description": "Points (gradescope-utils' weight; results' max_score)."},
                    "visibility": {"enum": list(VISIBILITIES),
                                   "description": "When Gradescope shows the test to the student."},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                                "description": "Seconds student code may run in this test, start-up included."},
                    "extra_credit": {"type": "boolean",
                                     "description": "Points beyond the assignment's total."},
                },
            },
        },
    },
}


MODEL_PARTS = frozenset({"p6c", "p6d", "p6e", "p6f", "p6h"})  # parts whose checks run the model


@dataclass(frozen=True)
class RubricSettings:
    """The rubric's run-wide settings (see SCHEMA for each key's meaning).

    time_budget_s: seconds for a whole grading (None: no budget).
    model_timeout_factor, model_timeout_minimum_s: how model tests' limits derive from the
        reference's measured time.
    """

    time_budget_s: float | None = 540.0
    model_timeout_factor: float = 20.0
    model_timeout_minimum_s: float = 30.0

    def model_timeout(self, reference_seconds: float) -> float:
        return max(self.model_timeout_minimum_s, self.model_timeout_factor * reference_seconds)


class RubricError(ValueError):
    """A rubric file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class GradedTest:
    """One row of results.json.

    test_id: the rubric key, e.g. ``p3a_public``; checks name it in ``@graded``.
    part: the problem part, e.g. ``p3a``.
    name: the results name without the part prefix.
    weight: points (max_score).
    visibility: Gradescope visibility of the row.
    timeout: seconds of wall-clock time for student code in this test.
    number: Gradescope's sort key, ``<part>.<position within part>``.
    extra_credit: whether the points come on top of the assignment's total.
    timeout_from_reference: whether ``timeout`` is to be derived from the reference's measured
        time (a model test without a timeout of its own; see ``RubricSettings``).
    """

    test_id: str
    part: str
    name: str
    weight: float
    visibility: str
    timeout: float
    number: str
    extra_credit: bool
    timeout_from_reference: bool = False

    @property
    def needs_model(self) -> bool:
        return self.part in MODEL_PARTS

    @property
    def label(self) -> str:
        """The name as tables show it: extra-credit tests say so."""
        return f"{self.name} (extra credit)" if self.extra_credit else self.name

    @property
    def title(self) -> str:
        """The results.json name, ``[<part>] <label>``."""
        return f"[{self.part}] {self.label}"

    @property
    def hidden(self) -> bool:
        """Whether a student does not see this test's outcome before the due date/publication."""
        return self.visibility != "visible"


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _load(path: Path) -> dict:
    """The rubric file's data, validated against SCHEMA; raises RubricError naming file and key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RubricError(f"{path}: cannot read the rubric: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RubricError(f"{path.name}: not valid YAML: {error}") from None
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{path.name}: {_where(e)}: {e.message}" for e in errors[:10]]
        raise RubricError("invalid rubric\n" + "\n".join(lines))
    return data


def rubric_settings(path: Path | str = DEFAULT_RUBRIC) -> RubricSettings:
    """The rubric's run-wide settings, defaults filled in."""
    data = _load(Path(path))
    model = data.get("model_timeouts") or {}
    default = RubricSettings()
    return RubricSettings(time_budget_s=float(data.get("time_budget", default.time_budget_s)),
                          model_timeout_factor=float(model.get("factor", default.model_timeout_factor)),
                          model_timeout_minimum_s=float(model.get("minimum", default.model_timeout_minimum_s)))


def load_rubric(path: Path | str = DEFAULT_RUBRIC) -> list[GradedTest]:
    """The rubric's tests in file order; raises RubricError naming the file and key. A model
    test without a timeout of its own gets model_timeouts' minimum here, and is marked
    ``timeout_from_reference`` (the runner derives its limit once the reference is timed)."""
    path = Path(path)
    data = _load(path)
    settings = rubric_settings(path)
    defaults = {"visibility": "visible", "timeout": 30, **(data.get("defaults") or {})}
    tests, positions = [], {}
    for test_id, entry in data["tests"].items():
        part = entry["part"]
        if not test_id.startswith(part + "_"):
            raise RubricError(f"{path.name}: tests.{test_id}.part: {part!r} does not match the id's prefix "
                              f"(ids are <part>_<what>, e.g. {part}_public)")
        positions[part] = positions.get(part, 0) + 1
        test = GradedTest(
            test_id=test_id, part=part, name=entry["name"], weight=float(entry["weight"]),
            visibility=entry.get("visibility", defaults["visibility"]),
            timeout=float(entry.get("timeout", defaults["timeout"])),
            number=f"{_part_number(part)}.{positions[part]}", extra_credit=bool(entry.get("extra_credit", False)))
        if test.needs_model and "timeout" not in entry:
            test = replace(test, timeout=settings.model_timeout_minimum_s, timeout_from_reference=True)
        tests.append(test)
    return tests


def data_files(path: Path | str = DEFAULT_RUBRIC, *, environ=None) -> dict[str, Path]:
    """The course's data files configured for P6, by name (``DATA_NAMES``); names not configured
    are absent. The rubric's ``data:`` section gives paths relative to the rubric file (or
    absolute); a folder in ``AUTOGRADER_DATA_DIR`` overrides them with the files in it that have
    the course's names (``random.pkl`` …, or ``random.txt`` … with one string per line).
    Raises RubricError naming the key for a configured path that is not a file."""
    path = Path(path)
    section = _load(path).get("data") or {}
    files = {}
    for name, value in section.items():
        file = (path.parent / value).resolve() if not Path(value).is_absolute() else Path(value)
        if not file.is_file():
            raise RubricError(f"{path.name}: data.{name}: {value!r} is not a file (resolved to {file})")
        files[name] = file
    folder = (os.environ if environ is None else environ).get(DATA_DIR_ENV)
    if folder:
        for name in DATA_NAMES:
            found = [Path(folder) / f"{name}{suffix}" for suffix in (".pkl", ".txt") if (Path(folder) / f"{name}{suffix}").is_file()]
            if found:
                files[name] = found[0].resolve()
    return files


def _part_number(part: str) -> str:
    """p3a -> 3a, so Gradescope sorts rows by problem then part."""
    return re.sub(r"^p", "", part)
