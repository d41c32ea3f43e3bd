"""The problem registry: which problems the autograder grades, and what each one declares.

A problem is one folder (``autograder/problems/<name>/``) whose ``__init__.py`` defines
``PROBLEM = Problem(...)``; everything about it lives there:

- ``__init__.py``: the declaration (files, functions, parts, which parts run the model, its
  child-side modules, hooks);
- ``test_*.py``: its graded checks (pytest tests marked ``@pytest.mark.graded("<test id>")``);
- ``child.py`` (any modules named in ``harness_modules``): its harnesses, the grader-written code
  that runs inside the untrusted child next to student code (``autograder.child.harness``). They
  import only the standard library, numpy, torch and the child runtime, with relative imports
  (``from ...child.harness import harness``): the sandbox copies them into the child's runtime as
  ``_autograder.problems.<name>.<module>``, and the fork server imports them once per run;
- ``child_clean.py`` (any modules named in ``clean_modules``): harnesses only clean children run
  (the reference's formulas, replays of a student's draws). Student code must not see them: they
  are never copied into the runtime nor imported by the fork server; a clean child receives their
  source in its first request (``ChildProcess``). They may import the harness modules;
- any other module the checks share on the grader's side.

The engine (sandbox, runner, rubric, grading, calibration, child/) names no problem: it asks
this registry. The built-in problems are the folders of ``autograder/problems``; a rubric may add
folders of its own (``problems:``, paths relative to the rubric file), which is how a course
keeps a problem outside this tree. A rubric test's part must be a part some problem declares.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

PROBLEMS_DIR = Path(__file__).with_name("problems")
REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_UPLOAD = REPO_ROOT / "reference"  # the reference solution, uploaded as a student would
_EXTERNAL_PACKAGE = "autograder_problems"  # the package name external problem folders load under


class RegistryError(ValueError):
    """A problem folder that cannot be used; the message names the folder."""


class HookError(RuntimeError):
    """A problem's hook (``prepare``, ``plots``) failed in a way its user can act on."""


@dataclass(frozen=True)
class Problem:
    """What one problem declares (in ``<folder>/__init__.py`` as ``PROBLEM``).

    name: the problem's id, e.g. ``p4``; rubric parts are this name or it plus a letter.
    title: what it is about, for listings.
    files: the submission files it grades, e.g. ``("p4_autoregressive.py",)``.
    functions: per file, the functions students write (documentation, "did you mean").
    parts: the rubric parts it scores, e.g. ``("p4",)`` or ``("p6a", "p6b")``.
    model_parts: those of its parts whose checks run the model (the child gets GPT-2).
    harness_modules: its child-side modules in its folder (``"child"`` is ``child.py``).
    clean_modules: its child-side modules for clean children only (see the module docstring).
    prepare: ``prepare(model_dir, *, device, files) -> Path``: builds what grading the model
        parts needs before any test runs (P6's reference outputs), returning the cache file; the
        model tests' time limits are stored beside it (calibration.py).
    prepare_default: ``prepare_default(*, rubric) -> str``: what ``prepare-model`` (setup.sh)
        builds for the default model; returns a line for the terminal.
    plots: ``plots(*, submission, model, device, out, data_files, say) -> list[Path]``: the
        ``plots`` command's figures.
    folder: the problem's folder (set when it is loaded).
    """

    name: str
    title: str
    files: tuple[str, ...]
    parts: tuple[str, ...]
    functions: dict = field(default_factory=dict)
    model_parts: frozenset = frozenset()
    harness_modules: tuple[str, ...] = ()
    clean_modules: tuple[str, ...] = ()
    prepare: Callable | None = None
    prepare_default: Callable | None = None
    plots: Callable | None = None
    folder: Path | None = None

    @property
    def check_files(self) -> list[Path]:
        """Its graded checks, the folder's ``test_*.py``."""
        return sorted(self.folder.glob("test_*.py"))

    def harness_files(self) -> dict[str, Path]:
        """Its child-side modules: module name -> file."""
        return {name: self.folder / f"{name}.py" for name in self.harness_modules}

    def clean_files(self) -> dict[str, Path]:
        """Its modules for clean children only: module name -> file."""
        return {name: self.folder / f"{name}.py" for name in self.clean_modules}


def _load(folder: Path, module_name: str) -> Problem:
    init = folder / "__init__.py"
    if not init.is_file():
        raise RegistryError(f"{folder}: a problem folder needs an __init__.py defining PROBLEM")
    module = sys.modules.get(module_name)
    if module is None or Path(getattr(module, "__file__", "")).resolve() != init.resolve():
        try:
            if module_name.startswith(_EXTERNAL_PACKAGE + "."):
                spec = importlib.util.spec_from_file_location(module_name, init,
                                                              submodule_search_locations=[str(folder)])
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(module_name)
        except Exception as error:
            sys.modules.pop(module_name, None)
            raise RegistryError(f"{init}: cannot be loaded: {type(error).__name__}: {error}") from None
    problem = getattr(module, "PROBLEM", None)
    if not isinstance(problem, Problem):
        raise RegistryError(f"{init}: defines no PROBLEM = Problem(...)")
    for part in problem.parts:
        if not (part == problem.name or (part.startswith(problem.name) and part[len(problem.name):].isalpha())):
            raise RegistryError(f"{init}: part {part!r} is not {problem.name!r} or {problem.name!r} and a letter")
    problem = replace(problem, folder=folder.resolve())
    for name, file in problem.harness_files().items():
        if not file.is_file():
            raise RegistryError(f"{init}: harness module {name!r} is not a file in {folder}")
    return problem


@lru_cache(maxsize=None)
def builtin_problems() -> tuple[Problem, ...]:
    """The problems of ``autograder/problems``, in name order."""
    folders = sorted(p for p in PROBLEMS_DIR.iterdir() if (p / "__init__.py").is_file())
    return tuple(_load(folder, f"autograder.problems.{folder.name}") for folder in folders)


def problems(extra_folders=()) -> tuple[Problem, ...]:
    """The built-in problems and those in ``extra_folders`` (problem folders); raises
    RegistryError for a folder that is not a problem, or two problems with one name."""
    found = list(builtin_problems())
    for folder in map(Path, extra_folders):
        found.append(_load(folder.resolve(), f"{_EXTERNAL_PACKAGE}.{folder.resolve().name}"))
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RegistryError(f"two problems are named {', '.join(twice)}")
    parts = [part for p in found for part in p.parts]
    if len(parts) != len(set(parts)):
        raise RegistryError(f"a part is declared by two problems: {sorted({x for x in parts if parts.count(x) > 1})}")
    return tuple(found)


def _external_package() -> None:
    """The namespace external problem folders load under (their checks import siblings by it)."""
    if _EXTERNAL_PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_loader(_EXTERNAL_PACKAGE, loader=None, is_package=True)
        module = importlib.util.module_from_spec(spec)
        module.__path__ = []
        sys.modules[_EXTERNAL_PACKAGE] = module


_external_package()


def problem_of(part: str, known: tuple[Problem, ...]) -> Problem | None:
    """The problem that declares ``part``, or None."""
    return next((p for p in known if part in p.parts), None)


def expected_files(known: tuple[Problem, ...] | None = None) -> tuple[str, ...]:
    """Every submission file the problems grade, in problem order."""
    return tuple(f for p in (builtin_problems() if known is None else known) for f in p.files)
