"""P2 checks: Gaussian class-conditionals give a softmax (part p2).

softmax_parameters(pi, mu, sigma) must return (W, b) with W (k, n), b (k,). Only the posterior is
identified, so (W + 1cᵀ, b + d1) is as right as the course's (μ/σ², log π − ‖μ‖²/(2σ²)) for any
vector c and scalar d: both are compared with ``expect_close_up_to_shift`` (rows centred first),
with |got_c − expected_c| ≤ 1e-9 + 1e-6·max|expected_c| per array. An answer that is right only
for a uniform prior fails every instance with a non-uniform π; the public non-uniform ones hold
a rare class (π_y = 1e-9) and one-dimensional data.
"""
import numpy as np
import pytest

from autograder.child.codec import TensorValue, describe
from autograder.compare import CheckFailed, expect_close_up_to_shift, feedback, short
from autograder.sandbox import StudentCodeError
from reference.submission import p2_gaussian_softmax as reference

MODULE = "p2_gaussian_softmax"
RTOL, ATOL = 1e-6, 1e-9

UNIFORM_PUBLIC = [
    ("two classes in 2-D, uniform prior", [0.5, 0.5], [[1.0, 0.0], [-1.0, 2.0]], 1.0),
    ("three classes in 3-D, uniform prior, sigma = 0.5", [1 / 3, 1 / 3, 1 / 3],
     [[0.0, 1.0, 2.0], [1.0, -1.0, 0.5], [2.0, 2.0, -3.0]], 0.5),
]
NONUNIFORM_PUBLIC = [
    ("two classes in 2-D, prior (0.2, 0.8)", [0.2, 0.8], [[1.0, 0.0], [-1.0, 2.0]], 1.0),
    ("four classes in 2-D, prior (0.1, 0.2, 0.3, 0.4), sigma = 2", [0.1, 0.2, 0.3, 0.4],
     [[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5], [3.0, -1.0]], 2.0),
    ("three classes in 1-D (mu has shape (3, 1)), prior (0.5, 0.3, 0.2), sigma = 0.7", [0.5, 0.3, 0.2],
     [[-1.0], [0.0], [2.5]], 0.7),
    ("three classes in 2-D with a rare class (pi = 1e-9)", [1e-9, 0.6 - 1e-9, 0.4],
     [[0.5, -0.5], [1.0, 2.0], [-1.5, 0.0]], 1.3),
]


def _instances(rows):
    return [(text, np.array(pi, dtype=np.float64), np.array(mu, dtype=np.float64), float(sigma))
            for text, pi, mu, sigma in rows]


def random_instances(rng, *, count: int = 10):
    """k 2..8 classes, n 2..6 dimensions, σ in [0.3, 3], means N(0, 2²), a non-uniform prior
    from a Dirichlet(1) with every π_y ≥ 1e-3."""
    instances = []
    for _ in range(count):
        k, n = int(rng.integers(2, 9)), int(rng.integers(2, 7))
        pi = np.maximum(rng.dirichlet(np.ones(k)), 1e-3)
        pi /= pi.sum()
        mu = rng.normal(0.0, 2.0, size=(k, n))
        sigma = float(rng.uniform(0.3, 3.0))
        instances.append((f"a random instance with k = {k} classes in n = {n} dimensions, sigma = {sigma:.4g}",
                          pi, mu, sigma))
    return instances


HINT = ("p(y|x) ∝ π_y exp(−‖x − μ_y‖²/(2σ²)); expand the square and drop what is the same for every class: "
        "w_y = μ_y/σ², b_y = log π_y − ‖μ_y‖²/(2σ²) (adding one vector to every w_y, or one number to every b_y, "
        "is also right).")


def _hint(pi, got_b, b) -> str:
    """A sharper hint when the bias ignores the prior (only right for a uniform π)."""
    no_prior = b - np.log(pi)
    try:
        if got_b is not None and np.allclose(got_b - got_b.mean(), no_prior - no_prior.mean(), rtol=1e-6, atol=1e-9):
            return "your b leaves out log π_y: that is only right when the prior is uniform. " + HINT
    except (TypeError, ValueError):
        pass
    return HINT


def _pair(got, *, call: str, instance: str):
    """(W, b) from a returned tuple or list of two values; anything else fails with feedback."""
    if type(got) in (tuple, list) and len(got) == 2:
        return got
    raise CheckFailed(feedback(call=call, instance=instance, got=f"{short(got)}, {describe(got)}",
                               expected="a tuple (W, b): W of shape (k, n), b of shape (k,)", hint=HINT))


def _as_plain(value):
    array = value.array if isinstance(value, TensorValue) else value
    return np.asarray(array, dtype=np.float64) if type(array) is np.ndarray and array.dtype.kind in "fiu" else None


def check(student, instances, outcome) -> None:
    """Call softmax_parameters on every instance in one round trip; compare W and b with the
    reference up to a common shift; fail on the first wrong answer, saying how many were wrong."""
    answers = student.map(MODULE, "softmax_parameters", [(pi, mu, sigma) for _, pi, mu, sigma in instances])
    failures = []
    for (text, pi, mu, sigma), got in zip(instances, answers):
        call = "softmax_parameters(pi, mu, sigma)"
        instance = (f"{text}: pi = {np.array2string(pi, precision=4)}, mu = {np.array2string(mu, precision=4, threshold=30)}, "
                    f"sigma = {sigma!r}")
        if isinstance(got, StudentCodeError):
            got.message = f"On {instance}:\n{got.message}"
            raise got
        W, b = reference.softmax_parameters(pi, mu, sigma)
        try:
            got_W, got_b = _pair(got, call=call, instance=instance)
            hint = _hint(pi, _as_plain(got_b), b)
            expect_close_up_to_shift(got_W, W, rtol=RTOL, atol=ATOL, call=call, instance=instance, hint=hint, name="W")
            expect_close_up_to_shift(got_b, b, rtol=RTOL, atol=ATOL, call=call, instance=instance, hint=hint, name="b")
        except CheckFailed as error:
            failures.append(str(error))
    if failures:
        raise CheckFailed(f"{len(failures)} of {len(instances)} answers wrong. The first:\n{failures[0]}")
    outcome.note(f"All {len(instances)} answers right up to a common shift "
                 f"(tolerance {ATOL:g} + {RTOL:g}·max|entry| after centring).")


@pytest.mark.graded("p2_uniform_public")
def test_uniform_prior_public(student, outcome):
    check(student, _instances(UNIFORM_PUBLIC), outcome)


@pytest.mark.graded("p2_nonuniform_public")
def test_nonuniform_prior_public(student, outcome):
    check(student, _instances(NONUNIFORM_PUBLIC), outcome)


@pytest.mark.graded("p2_random")
def test_random(student, rng, outcome):
    check(student, random_instances(rng), outcome)
