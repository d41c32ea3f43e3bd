"""P1 checks: maximum likelihood is KL minimisation (part p1).

Each of the three functions is graded on fixed public instances and on instances drawn from the
run's seed. Expected values come from the reference solution (tests/ verifies it against the
SymPy identity in reference/closed_forms.py). The public instances hold every edge case the
spec names: zero cells (0·log 0 = 0), a row with p̂(x) = 0 (contributes nothing), q = 0 where
p̂ = 0 (allowed), a single row and a single column. Random instances have zero cells but every
row has mass and q > 0, so they test the formula at sizes and values no one can hard-code.

Tolerance: |got − expected| ≤ 1e-8 + 1e-5·S, in float64, where S is the size of the terms the
result is summed from: S = Σ_{p̂(x,y)>0} p̂(x,y)·(1 + |log p̂(x,y)| + |log q(y|x)|) for expected_kl,
without the |log q| for theta_independent_term and without the |log p̂| for
expected_log_likelihood (|log p̂(x,y)| ≥ |log p̂(y|x)|, so S covers either way of writing the
conditional; the 1 covers rounding p̂ and q themselves, whose relative error becomes an absolute
one in the log). Rounding errors grow with S, not with the result: a KL of 0.003 summed from
terms of size 3 is off by ~3e-7 in float32, 100 times its old 1e-6·|expected| tolerance. Measured
over 2000 seeds (tests/test_p1_p2_float32.py), float32 answers stay below 2e-7·S when summed
vectorised (numpy, torch) and below 1.3e-6·S when summed one term at a time in float32: at least
8 times inside. Every wrong formula we know is off by far more: on each of those 2000 seeds some
random instance puts each mistake in ``known_mistakes`` over 8000 times its tolerance.
"""
import numpy as np
import pytest

from autograder.compare import (REAL_FORMS, BestEffortHint, check_each, expect_close, known_mistake, map_calls,
                                plain_numbers)
from autograder.sandbox import StudentCodeError
from reference.submission import p1_mle_kl as reference

MODULE = "p1_mle_kl"
RTOL, ATOL = 1e-5, 1e-8  # |got − expected| ≤ ATOL + RTOL·S, S from ``term_scale``
SCALE_OF = {
    "expected_kl": "Σ p(x,y)·(1 + |log p(x,y)| + |log q(y|x)|) over p(x,y) > 0",
    "expected_log_likelihood": "Σ p(x,y)·(1 + |log q(y|x)|) over p(x,y) > 0",
    "theta_independent_term": "Σ p(x,y)·(1 + |log p(x,y)|) over p(x,y) > 0",
}


def _public():
    """(description, p_xy, q_y_given_x) for the fixed public instances."""
    third = 1.0 / 3.0
    return [
        ("a dense 2x2 p_xy", [[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.5], [0.25, 0.75]]),
        ("a 2x3 p_xy with zero cells", [[0.25, 0.0, 0.25], [0.1, 0.4, 0.0]], [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]),
        ("a 3x3 p_xy whose second row is all zero (p(x) = 0)", [[0.2, 0.1, 0.1], [0.0, 0.0, 0.0], [0.3, 0.0, 0.3]],
         [[third, third, third], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]]),
        ("a 3x3 p_xy with a zero row and q = 0 wherever p_xy = 0 (allowed)",
         [[0.3, 0.0, 0.2], [0.0, 0.0, 0.0], [0.1, 0.4, 0.0]], [[0.6, 0.0, 0.4], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]),
        ("a single row (|X| = 1)", [[0.1, 0.6, 0.3]], [[0.2, 0.2, 0.6]]),
        ("a single column (|Y| = 1)", [[0.4], [0.6]], [[1.0], [1.0]]),
        ("deterministic conditionals p(y|x) in {0, 1}", [[0.0, 0.5], [0.5, 0.0]], [[0.1, 0.9], [0.7, 0.3]]),
    ]


PUBLIC = [(text, np.array(p, dtype=np.float64), np.array(q, dtype=np.float64)) for text, p, q in _public()]


def random_instances(rng, *, count: int = 12):
    """Shapes 1..8 x 2..8 (and one 30 x 40), about a quarter of the cells zero but every row with
    mass, entries spread over several orders of magnitude; q from a Dirichlet, strictly positive."""
    shapes = [(int(rng.integers(1, 9)), int(rng.integers(2, 9))) for _ in range(count - 1)] + [(30, 40)]
    instances = []
    for rows, cols in shapes:
        p = rng.dirichlet(np.full(rows * cols, 0.7)).reshape(rows, cols) * rng.uniform(0.01, 1.0, size=(rows, cols))
        p[rng.random((rows, cols)) < 0.25] = 0.0
        for row in np.flatnonzero(p.sum(axis=1) == 0.0):  # every row keeps some mass
            p[row, rng.integers(cols)] = rng.uniform(0.01, 1.0)
        p /= p.sum()
        q = rng.dirichlet(np.full(cols, 1.5), size=rows)
        q = np.maximum(q, 1e-6)
        q /= q.sum(axis=1, keepdims=True)
        instances.append((f"a random {rows}x{cols} p_xy", p, q))
    return instances


HINTS = {
    "expected_kl": "E_p(x)[KL] = sum over cells with p_xy > 0 of p(x, y) log(p(y|x) / q(y|x)), with p(y|x) = "
                   "p(x, y) / p(x): skip cells (and rows) where p_xy is 0, and weight by the joint p(x, y).",
    "expected_log_likelihood": "sum over cells with p_xy > 0 of p(x, y) log q(y|x): 0·log 0 = 0, so cells with "
                               "p_xy = 0 must not enter (q may be 0 there), and use the natural log.",
    "theta_independent_term": "C = sum over cells with p_xy > 0 of p(x, y) log p(y|x) = −H(Y|X) (not −H(Y) or "
                              "−H(X, Y)); a row with p(x) = 0 contributes nothing.",
}


def _expected(function: str, p, q) -> float:
    if function == "theta_independent_term":
        return reference.theta_independent_term(p)
    return getattr(reference, function)(p, q)


def term_scale(function: str, p, q) -> float:
    """S, the size of the terms ``function``'s result is summed from (see SCALE_OF): float32
    rounding errs by a small multiple of 1e-7·S, however small the result itself is."""
    mask = p > 0
    logs = {"expected_kl": (np.log(p[mask]), np.log(q[mask])), "expected_log_likelihood": (np.log(q[mask]),),
            "theta_independent_term": (np.log(p[mask]),)}[function]
    return float(np.sum(p[mask] * (1.0 + sum(np.abs(log) for log in logs))))


def tolerance(function: str, p, q) -> float:
    """The largest |got − expected| accepted for ``function`` on (p, q)."""
    return ATOL + RTOL * term_scale(function, p, q)


def _log_sum(weights, values) -> float | None:
    """Σ weights·values over cells with weights > 0 (0·log 0 = 0); None when that is not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        total = float(np.sum(np.where(weights > 0, weights * values, 0.0)))
    return total if np.isfinite(total) else None


def known_mistakes(function: str, p, q) -> list[tuple[str, float | None]]:
    """What each known wrong formula returns on (p, q), with the hint naming it."""
    expected = _expected(function, p, q)
    p_x = p.sum(axis=1, keepdims=True)
    conditional = np.divide(p, p_x, out=np.zeros_like(p), where=p_x > 0)
    with np.errstate(divide="ignore"):
        log_p, log_c, log_q = np.log(p), np.log(conditional), np.log(q)
    with np.errstate(invalid="ignore"):  # -inf - -inf where both are 0: those cells have weight 0 (see _log_sum)
        q_over_c, p_over_q, c_over_q = log_q - log_c, log_p - log_q, log_c - log_q
    common = [("that is the right value in bits: use the natural log (np.log), not log2.", expected / np.log(2.0)),
              ("that is the right value with the opposite sign.", -expected)]
    if function == "expected_kl":
        return [("KL's arguments are swapped: you computed E_p(x)[KL(q(y|x) ‖ p(y|x))]; expected_kl is "
                 "E_p(x)[KL(p(y|x) ‖ q(y|x))], weighted by the data's p(y|x).", _log_sum(p_x * q, q_over_c)),
                ("that is Σ p(x, y) log(p(x, y) / q(y|x)): inside the log use the conditional p(y|x) = p(x, y) / p(x), "
                 "not the joint.", _log_sum(p, p_over_q)),
                ("that is the plain sum over x of KL(p(y|x) ‖ q(y|x)): weight each x by p(x).",
                 _log_sum(conditional, c_over_q)), *common]
    if function == "expected_log_likelihood":
        return [("that weights log q(y|x) by p(y|x): weight by the joint p(x, y).", _log_sum(conditional, log_q)),
                *common]
    p_y = p.sum(axis=0)
    with np.errstate(divide="ignore"):
        log_p_y = np.log(p_y)
    return [("that is −H(X, Y), the joint: C = Σ p(x, y) log p(y|x) = −H(Y|X) uses the conditional.", _log_sum(p, log_p)),
            ("that is −H(Y), the marginal's: C = Σ p(x, y) log p(y|x) = −H(Y|X) uses the conditional.", _log_sum(p_y, log_p_y)),
            *common]


def hint_for(function: str, p, q, got) -> str:
    """The hint naming the known mistake ``got`` matches on this instance, else the generic one."""
    numbers = plain_numbers(got)
    if function == "expected_kl" and numbers is not None and numbers.shape == () and np.isinf(numbers):
        swapped = np.any((p.sum(axis=1, keepdims=True) > 0) & (p == 0) & (q > 0))
        if swapped:
            return ("an infinite KL: KL(q(y|x) ‖ p(y|x)) is infinite where p(x, y) = 0 < q(y|x), so KL's arguments "
                    "look swapped. " + HINTS[function])
    named = known_mistake(got, known_mistakes(function, p, q), rtol=RTOL, atol=tolerance(function, p, q))
    return f"{named} {HINTS[function]}" if named else HINTS[function]


def check(student, function: str, instances, outcome) -> None:
    """Call ``function`` on every instance in one round trip and compare with the reference;
    fail on the first wrong answer, saying how many were wrong."""
    calls = [(p,) if function == "theta_independent_term" else (p, q) for _, p, q in instances]
    args = "p_xy" if function == "theta_independent_term" else "p_xy, q_y_given_x"
    call = f"{function}({args})"
    answers = map_calls(student, MODULE, function, calls, shown=[f"{call} on {text}" for text, _, _ in instances],
                        expected=f"a real number ({REAL_FORMS})", hint="return float(...) of your result.")
    def judge(item):
        (text, p, q), got = item
        instance = f"{text}, p_xy = {np.array2string(p, precision=4, threshold=30)}" + (
            "" if function == "theta_independent_term" else f", q_y_given_x = {np.array2string(q, precision=4, threshold=30)}")
        if isinstance(got, StudentCodeError):
            got.message = f"On {instance}:\n{call}: {got.message}"
            raise got
        expect_close(got, _expected(function, p, q), rtol=RTOL, atol=ATOL, call=call, instance=instance,
                     hint=BestEffortHint(lambda: hint_for(function, p, q, got), generic=HINTS[function]),
                     scale=term_scale(function, p, q), scale_of=SCALE_OF[function])
    check_each(zip(instances, answers), judge)
    outcome.note(f"All {len(instances)} answers within {ATOL:g} + {RTOL:g}·S, S = {SCALE_OF[function]} "
                 f"(the size of the terms summed).")


@pytest.mark.graded("p1_kl_public")
def test_expected_kl_public(student, outcome):
    check(student, "expected_kl", PUBLIC, outcome)


@pytest.mark.graded("p1_kl_random")
def test_expected_kl_random(student, rng, outcome):
    check(student, "expected_kl", random_instances(rng), outcome)


@pytest.mark.graded("p1_loglik_public")
def test_expected_log_likelihood_public(student, outcome):
    check(student, "expected_log_likelihood", PUBLIC, outcome)


@pytest.mark.graded("p1_loglik_random")
def test_expected_log_likelihood_random(student, rng, outcome):
    check(student, "expected_log_likelihood", random_instances(rng), outcome)


@pytest.mark.graded("p1_constant_public")
def test_theta_independent_term_public(student, outcome):
    check(student, "theta_independent_term", PUBLIC, outcome)


@pytest.mark.graded("p1_constant_random")
def test_theta_independent_term_random(student, rng, outcome):
    check(student, "theta_independent_term", random_instances(rng), outcome)
