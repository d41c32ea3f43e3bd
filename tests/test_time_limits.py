"""The grading plugin's time limits: a test's own limit, the reference's time in the message,
and the run's time budget shared so that one part cannot starve the parts after it."""
from dataclasses import replace
from types import SimpleNamespace

import pytest

from autograder.grading import MIN_LIMIT_S, RESERVE_DEFAULT_S, RESERVE_FACTOR, GradingPlugin
from autograder.rubric import GradedTest

BASE = GradedTest(test_id="p6c_form", part="p6c", name="x", weight=1.0, visibility="visible", timeout=60.0,
                  number="6c.1", extra_credit=False)


def plugin(tests, *, budget, reference_seconds=None):
    made = GradingPlugin(tests=tests, sandbox=SimpleNamespace(model_dir=None, device="cpu"), seed=1,
                         reference_seconds=reference_seconds, time_budget_s=budget)
    made.run_order = list(tests)
    return made


def test_a_test_gets_its_own_limit_and_the_reference_time_is_named():
    first = BASE
    made = plugin([first], budget=1000, reference_seconds={"p6c_form": 2.5})
    limit, why = made._time_limit(first)
    assert limit == 60.0 and "reference solution takes 2.5 s" in why


def test_time_is_kept_back_for_the_tests_after():
    first = replace(BASE, timeout=500.0)
    later = [replace(BASE, test_id=f"p6d_{i}", part="p6d", timeout=100.0) for i in range(3)]
    measured = {"p6d_0": 10.0}  # the others were not measured
    made = plugin([first, *later], budget=300, reference_seconds=measured)
    reserve = min(100.0, RESERVE_FACTOR * 10.0) + 2 * RESERVE_DEFAULT_S
    limit, why = made._time_limit(first)
    assert limit == pytest.approx(300 - reserve, abs=1.0) and "could be spared" in why
    last_limit, _ = made._time_limit(later[-1])
    assert last_limit == 100.0  # nothing after it: its own limit fits the budget


def test_a_spent_budget_still_gives_a_minimal_limit():
    made = plugin([BASE], budget=0)
    limit, why = made._time_limit(BASE)
    assert limit == MIN_LIMIT_S and "could be spared" in why
