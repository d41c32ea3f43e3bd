"""P3 checks: parameter counts of discrete joint distributions (parts p3a, p3b, p3c).

Expected values come from the reference solution (exact Python ints; tests/ verifies it against
brute-force counts and SymPy). Public instances are small and fixed; random instances are drawn
from the run's seed and include counts far beyond 2**63, so a float or a numpy int64 product
(which overflows silently) fails them, and so does an answer hard-coded for the public ones.
"""
import math

import numpy as np
import pytest

from autograder.compare import BestEffortHint, check_each, expect_exact_int, map_calls, plain_count
from autograder.sandbox import StudentCodeError
from reference.submission import p3_param_counts as reference

MODULE = "p3_param_counts"
PUBLIC_K = [[2, 2], [3, 4, 5], [2] * 10, [7], [1, 3], [10, 1, 4], [6, 5, 4, 3, 2]]
INT_FORMS = "an exact int (a Python int, or a numpy integer below 2**63)"
INT_FIX = ("convert the count with int(...): numbers from sympy, fractions or other libraries are not plain ints "
           "(and a float is never exact beyond 2**53).")
PUBLIC_KM = [([2, 2], 1), ([3, 4, 5], 1), ([3, 4, 5], 2), ([2] * 10, 3), ([4, 1, 3, 2], 2), ([5, 3, 2, 7, 2, 3], 4)]


def random_k(rng, *, count: int) -> list[list[int]]:
    """Small vectors (n 2..12, k_i 1..9), huge ones (k_i up to 10**6, products past 2**63) and
    giant ones (k_i themselves past 2**53, so even a sum is wrong in floating point)."""
    small = [rng.integers(1, 10, size=rng.integers(2, 13)).tolist() for _ in range(count)]
    huge = [rng.integers(10**4, 10**6, size=rng.integers(5, 9)).tolist() for _ in range(count // 2)]
    # Past 2**53 but below 2**63: a float loses the last units here while int64 still holds.
    edge = [[2**27 + int(rng.integers(0, 1000)), 2**27 + int(rng.integers(0, 1000))] for _ in range(2)]
    giant = [[int(rng.integers(2**54, 2**62)) * int(rng.integers(1, 64)) + 1 for _ in range(3)] for _ in range(2)]
    return small + huge + edge + giant


def random_km(rng, *, count: int) -> list[tuple[list[int], int]]:
    """Every valid m for each drawn k vector."""
    return [(k, m) for k in random_k(rng, count=count) for m in range(1, len(k))]


def _float_sum(values) -> int:
    """The sum done in floating point (each term rounded to a double, every partial sum too)."""
    total = 0.0
    for value in values:
        total += float(value)
    return int(total)


def overflow_or_rounding(expected: int, got) -> str | None:
    """What an exact-int answer that is off most likely suffered: int64 overflow or float rounding."""
    if type(got) is not int and not isinstance(got, np.integer):
        return None
    got = int(got)  # a numpy integer's arithmetic would wrap around
    if got != expected and (got - expected) % 2**64 == 0:
        return ("that differs from the right count by a multiple of 2**64: int64 overflow. numpy's int64 arithmetic "
                "(np.prod, an int64 array) wraps around silently past 2**63 − 1; use Python ints, e.g. math.prod(k), "
                "which never overflow.")
    if got != expected and abs(expected) >= 2**53 and abs(got - expected) <= abs(expected) * 2**-50:
        return ("that is the right count rounded to a float (exact only below 2**53): keep every step in Python "
                "ints, no float(), / or math.pow.")
    return None


P3A_HINT = "a joint with no independence assumptions has prod(k_i) outcomes, one of them determined by the rest."
P3B_HINT = "under mutual independence each X_i has its own marginal with k_i - 1 free parameters."
P3C_HINT = ("the first m variables form a full joint (prod - 1 parameters); each later X_i has (k_i - 1) "
            "entries for every configuration of X_{i-m}..X_{i-1}.")
GENERIC_HINTS = {"full_joint": P3A_HINT, "independent": P3B_HINT, "markov": P3C_HINT}


def p3a_hint(k, got) -> str:
    """The known mistake ``got`` (any returned value) matches, else the generic hint."""
    named = overflow_or_rounding(reference.full_joint(k), got)
    if named:
        return named
    number = plain_count(got)  # only plain ints and floats are compared: an array's == is not a bool
    if number is None:
        return P3A_HINT
    if number == math.prod(k):
        return "one joint probability is fixed by the others (they sum to 1): subtract one."
    if number == reference.independent(k):
        return "that is the count for independent variables; a full joint has one entry per joint outcome."
    return P3A_HINT


def p3b_hint(k, got) -> str:
    """The known mistake ``got`` (any returned value) matches, else the generic hint."""
    named = overflow_or_rounding(reference.independent(k), got)
    if named:
        return named
    number = plain_count(got)  # only plain ints and floats are compared: an array's == is not a bool
    if number is None:
        return P3B_HINT
    if number == sum(k):
        return "each marginal sums to 1, so X_i has k_i - 1 free parameters, not k_i."
    if number == reference.full_joint(k):
        return "that is the full joint; mutual independence leaves one marginal per variable."
    if type(number) is int and number in (_float_sum(k) - len(k), _float_sum(x - 1 for x in k)) and max(k) >= 2**53:
        return ("that is the sum done in floating point, exact only below 2**53: the k_i here exceed it. Keep the "
                "sum in Python ints (no float() or np.float64).")
    return P3B_HINT


def _markov_window(k, m, window: int) -> int:
    """markov's formula with X_i (i ≥ m) conditioned on ``window`` previous variables (clipped at X_1)."""
    return math.prod(k[:m]) - 1 + sum((k[i] - 1) * math.prod(k[max(0, i - window):i]) for i in range(m, len(k)))


def p3c_hint(k, m, got) -> str:
    """The known mistake ``got`` (any returned value) matches, else the generic hint."""
    named = overflow_or_rounding(reference.markov(k, m), got)
    if named:
        return named
    if type(got) is not int and not isinstance(got, np.integer):
        return P3C_HINT
    got = int(got)
    for window in (m - 1, m + 1):
        if window >= 0 and got == _markov_window(k, m, window):
            return (f"that conditions each X_i on {window} previous variables, not m = {m}: the Markov window is off "
                    f"by one. X_i (i > m) depends on exactly X_(i-m)..X_(i-1), i.e. k[i - m:i] in 0-based Python.")
    if m > 1 and got == reference.markov(k, 1):
        return f"that is the count for m = 1 (a first-order chain); here m = {m}: X_i depends on the m variables before it."
    if got == reference.full_joint(k):
        return "that is the full joint's count: the Markov assumption removes parameters."
    return P3C_HINT


def check_instances(student, function: str, instances: list[tuple], expected_fn, hint_fn, outcome) -> None:
    """Call ``function`` on every instance in one round trip; fail on the first wrong answer,
    saying how many were wrong."""
    shown = [f"{function}({', '.join(_show(a) for a in args)})" for args in instances]
    answers = map_calls(student, MODULE, function, instances, shown=shown, expected=INT_FORMS, hint=INT_FIX)
    def judge(item):
        args, got = item
        call = f"{function}({', '.join(_show(a) for a in args)})"
        if isinstance(got, StudentCodeError):
            got.message = f"On {call}: {got.message}"
            raise got
        expect_exact_int(got, expected_fn(*args), call=call,
                         hint=BestEffortHint(lambda: hint_fn(*args, got), generic=GENERIC_HINTS[function]))
    # a failed call after a wrong answer is counted: the earlier wrong answer says more
    check_each(zip(instances, answers), judge, count_errors=True)
    outcome.note(f"All {len(instances)} answers exact.")


def _show(arg) -> str:
    text = repr(arg)
    return text if len(text) <= 80 else text[:76] + "…]"


@pytest.mark.graded("p3a_public")
def test_full_joint_public(student, outcome):
    check_instances(student, "full_joint", [(k,) for k in PUBLIC_K], reference.full_joint, p3a_hint, outcome)


@pytest.mark.graded("p3a_random")
def test_full_joint_random(student, rng, outcome):
    check_instances(student, "full_joint", [(k,) for k in random_k(rng, count=20)], reference.full_joint, p3a_hint, outcome)


@pytest.mark.graded("p3b_public")
def test_independent_public(student, outcome):
    check_instances(student, "independent", [(k,) for k in PUBLIC_K], reference.independent, p3b_hint, outcome)


@pytest.mark.graded("p3b_random")
def test_independent_random(student, rng, outcome):
    check_instances(student, "independent", [(k,) for k in random_k(rng, count=20)], reference.independent, p3b_hint, outcome)


@pytest.mark.graded("p3c_public")
def test_markov_public(student, outcome):
    check_instances(student, "markov", PUBLIC_KM, reference.markov, p3c_hint, outcome)


@pytest.mark.graded("p3c_random")
def test_markov_random(student, rng, outcome):
    check_instances(student, "markov", random_km(rng, count=10), reference.markov, p3c_hint, outcome)
