"""Time limits of the tests that run the model, from the reference solution's measured time.

A fixed limit cannot fit every model and device: GPT-2 small on two CPU cores is about a
hundred times slower than the built-in tiny model, and a GPU faster again. So the first grading
on a model and device (or setup.sh's ``prepare-model``, for the default model) grades
``reference/`` once on the rubric's model tests, with generous limits and a fixed seed (the
calibration), and stores how long each test took beside the cache file the model problems'
``prepare`` hook built (P6: ``models_root()/reference-cache/<cache file's name>.seconds-<device>.json``;
``<model fingerprint>.seconds-<device>.json`` there when no problem prepares one). Each model test
without a timeout of its own then gets ``factor x`` that time, and at least ``minimum`` seconds
(the rubric's ``model_timeouts``). The calibration also proves that the reference keeps full
marks on this model and device; a test where it does not keeps the minimum limit, and the run's
notes say so.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from .models import cache_lock, fingerprint, models_root, write_cache
from .registry import REFERENCE_UPLOAD, Problem, builtin_problems
from .rubric import GradedTest

CALIBRATION_SEED = 236
CALIBRATION_LIMIT_S = 1800.0  # per test while calibrating: the reference is trusted not to loop
FORMAT = 1


def _path(cache_path: Path, device: str) -> Path:
    return cache_path.with_name(f"{cache_path.stem}.seconds-{device}.json")


def prepared_cache(tests: list[GradedTest], *, model_dir: Path, device: str, files: dict,
                   problems: tuple[Problem, ...] | None = None) -> Path:
    """Run the ``prepare`` hook of each problem with a model test among ``tests`` (P6 builds its
    reference outputs) and return the file the calibration is stored beside: the first hook's
    cache file, or one named by the model's fingerprint when no problem prepares anything."""
    parts = {t.part for t in tests if t.needs_model}
    built = [p.prepare(model_dir, device=device, files=files) for p in (problems or builtin_problems())
             if p.prepare is not None and parts & set(p.model_parts)]
    return built[0] if built else models_root() / "reference-cache" / f"{fingerprint(model_dir)}.json"


def reference_seconds(tests: list[GradedTest], *, model_dir: Path, device: str, files: dict,
                      problems: tuple[Problem, ...] | None = None) -> tuple[dict, list[str]]:
    """The reference's seconds in each model test of ``tests`` whose limit derives from it
    (measured now if not stored yet), and notes for the report (empty when all is well)."""
    wanted = [t for t in tests if t.timeout_from_reference]
    if not wanted:
        return {}, []
    path = _path(prepared_cache(wanted, model_dir=model_dir, device=device, files=files, problems=problems), device)
    stored = _read(path)
    missing = [t for t in wanted if t.test_id not in stored["seconds"] and t.test_id not in stored["failed"]]
    if missing:
        with cache_lock(path):
            stored = _read(path)
            missing = [t for t in wanted if t.test_id not in stored["seconds"] and t.test_id not in stored["failed"]]
            if missing:
                stored = _calibrate(missing, stored, model_dir=model_dir, device=device, files=files,
                                    problems=problems)
                write_cache(path, stored)
    seconds = {t.test_id: stored["seconds"][t.test_id] for t in wanted if t.test_id in stored["seconds"]}
    failed = [t.test_id for t in wanted if t.test_id in stored["failed"]]
    notes = [f"Warning: the reference solution did not get full marks on {', '.join(failed)} with this model and "
             f"device when its time was measured ({stored['failed'][failed[0]][:300]}); those tests keep the "
             f"minimum time limit, and their verdicts deserve a look."] if failed else []
    return seconds, notes


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == FORMAT:
            return data
    except (OSError, ValueError):
        pass
    return {"format": FORMAT, "seconds": {}, "student_seconds": {}, "failed": {}}


def _calibrate(tests: list[GradedTest], stored: dict, *, model_dir: Path, device: str, files: dict,
               problems: tuple[Problem, ...] | None) -> dict:
    """Grade the reference on ``tests`` and add what each took to ``stored``."""
    from .runner import grade_tests
    generous = [replace(t, timeout=CALIBRATION_LIMIT_S, timeout_from_reference=False) for t in tests]
    report = grade_tests(REFERENCE_UPLOAD, tests=generous, model_dir=model_dir, device=device,
                         seed=CALIBRATION_SEED, files=files, time_budget_s=None, problems=problems)
    for row in report.results:
        test_id = row.test.test_id
        if row.test.part == "grader":
            continue
        if row.passed:
            stored["seconds"][test_id] = round(row.seconds, 3)
            stored["student_seconds"][test_id] = round(row.student_seconds, 3)
        else:
            stored["failed"][test_id] = row.output
    stored["cpu_count"] = os.cpu_count()
    return stored


def with_limits(tests: list[GradedTest], seconds: dict, *, factor: float, minimum: float) -> list[GradedTest]:
    """``tests`` with each derived limit set: max(minimum, factor x the reference's seconds)."""
    return [replace(t, timeout=max(minimum, factor * seconds[t.test_id]))
            if t.timeout_from_reference and t.test_id in seconds else t for t in tests]
