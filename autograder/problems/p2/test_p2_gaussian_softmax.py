"""P2 checks: Gaussian class-conditionals give a softmax (part p2).

softmax_parameters(pi, mu, sigma) must return (W, b) with W (k, n), b (k,). Only the posterior is
identified, so (W + 1cᵀ, b + d1) is as right as the course's (μ/σ², log π − ‖μ‖²/(2σ²)) for any
vector c and scalar d: both are compared with ``expect_close_up_to_shift`` (rows centred first),
entrywise within 1e-9 + 4e-6·S, S the size of the terms each array is computed from, taken from
the instance (never from the answer, so a huge shift buys no slack):
- W: S = max|μ/σ²|;
- b: S = max_y (1 + |log π_y| + ‖μ_y‖²/(2σ²)) + (n/2)·|log(2πσ²)|: the terms of b_y, with 1 for
  rounding π itself and the Gaussian's log normaliser, which a right answer may keep.
Rounding errors grow with these terms, not with the centred entries (with k = 2 and near-equal
b_y those are tiny). Measured over 2000 seeds (tests/test_p1_p2_float32.py), float32 answers stay
below 2.3e-7·S: more than 15 times inside. Every known mistake is off by far more: on each of
those seeds some random instance puts each mistake in ``known_mistakes`` over 20000 times the
tolerance; the public rare class smoothed as log(π + 1e-12) is off by 1e-3 (6.7e-4 after
centring), 7 times the tolerance on that instance, whose S holds |log 1e-9| = 20.7. An answer
that is right only for a uniform prior fails every instance with a non-uniform π; the public
non-uniform ones hold a rare class (π_y = 1e-9) and one-dimensional data.

W and b must be ndarrays or tensors: a list is refused with feedback saying how to convert it.
"""
import numpy as np
import pytest

from autograder.child.codec import TensorValue, describe
from autograder.compare import (BestEffortHint, CheckFailed, check_each, expect_close_up_to_shift, feedback, map_calls,
                                short)
from autograder.sandbox import StudentCodeError
from reference.submission import p2_gaussian_softmax as reference

MODULE = "p2_gaussian_softmax"
RTOL, ATOL = 4e-6, 1e-9  # |got_c − expected_c| ≤ ATOL + RTOL·S, S from ``scales``
SCALE_OF = {"W": "max|μ/σ²|",
            "b": "max_y (1 + |log π_y| + ‖μ_y‖²/(2σ²)) + (n/2)·|log(2πσ²)|"}

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


def scales(pi, mu, sigma) -> dict[str, float]:
    """S for W and for b (see SCALE_OF): the size of the terms each is computed from, which
    float32 rounding errors grow with."""
    n = mu.shape[1]
    with np.errstate(divide="ignore"):
        terms = 1.0 + np.abs(np.log(pi)) + np.sum(mu**2, axis=1) / (2 * sigma**2)  # (k,)
    return {"W": float(np.max(np.abs(mu))) / sigma**2,
            "b": float(np.max(terms)) + 0.5 * n * abs(float(np.log(2 * np.pi * sigma**2)))}


def known_mistakes(pi, mu, sigma) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(hint, W, b) of each known wrong formula on this instance."""
    W, b = reference.softmax_parameters(pi, mu, sigma)
    norms = np.sum(mu**2, axis=1) / (2 * sigma**2)
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
    return [
        ("your b leaves out log π_y: that is only right when the prior is uniform.", W, b - log_pi),
        ("your b leaves out −‖μ_y‖²/(2σ²), the part of −‖x − μ_y‖²/(2σ²) that depends on the class.", W, log_pi),
        ("your W divides by σ, not σ² (and your b, if it matches, is right).", mu / sigma, b),
        ("your W divides by σ, not σ², and b uses σ for σ² too.", mu / sigma, log_pi - np.sum(mu**2, axis=1) / (2 * sigma)),
        ("your b is 0: with a uniform prior log π_y is the same for every class and may go, but −‖μ_y‖²/(2σ²) "
         "differs between classes and must stay.", W, np.zeros_like(b)),
        ("your b uses log π_y with the wrong sign.", W, -log_pi - norms),
        ("your b adds ‖μ_y‖²/(2σ²) instead of subtracting it.", W, log_pi + norms),
    ]


def _hint(pi, mu, sigma, got_W, got_b) -> str:
    """The hint naming the known mistake (W, b) matches on this instance (up to the allowed common
    shifts), else the generic one."""
    if got_W is None or got_b is None:
        return HINT
    scale = scales(pi, mu, sigma)
    for named, W, b in known_mistakes(pi, mu, sigma):
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))) or got_W.shape != W.shape or got_b.shape != b.shape:
            continue
        centred = [(g - g.mean(axis=0), e - e.mean(axis=0), scale[name]) for g, e, name in ((got_W, W, "W"), (got_b, b, "b"))]
        # the mistake's own terms may be larger than the right answer's (μ/σ for μ/σ²)
        if all(np.allclose(g, e, rtol=0.0, atol=ATOL + RTOL * max(s, float(np.max(np.abs(e), initial=0.0))))
               for g, e, s in centred):
            return f"{named} {HINT}"
    W, b = reference.softmax_parameters(pi, mu, sigma)
    if got_W.shape == W.shape and got_b.shape == b.shape and np.any(pi < 1e-6):
        common = np.isclose(got_W - got_W.mean(axis=0), W - W.mean(axis=0), rtol=0.0, atol=1e-6 * np.max(np.abs(W)))
        off_b = (got_b - b) - np.median(got_b - b)
        if common.all() and np.all(np.abs(off_b[pi >= 1e-6]) <= 1e-6 * np.max(np.abs(b))):
            return ("your b is off only for the rare class (π_y < 1e-6): log(π_y + ε), or a clipped π, moves it; use "
                    "log π_y itself. " + HINT)
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
    answers = map_calls(student, MODULE, "softmax_parameters", [(pi, mu, sigma) for _, pi, mu, sigma in instances],
                        shown=[f"softmax_parameters(pi, mu, sigma) on {text}" for text, _, _, _ in instances],
                        expected="a tuple (W, b) of ndarrays or tensors", hint="return plain numpy arrays, e.g. "
                        "np.asarray(W, dtype=float).")
    def judge(item):
        (text, pi, mu, sigma), got = item
        call = "softmax_parameters(pi, mu, sigma)"
        instance = (f"{text}: pi = {np.array2string(pi, precision=4)}, mu = {np.array2string(mu, precision=4, threshold=30)}, "
                    f"sigma = {sigma!r}")
        if isinstance(got, StudentCodeError):
            got.message = f"On {instance}:\n{got.message}"
            raise got
        W, b = reference.softmax_parameters(pi, mu, sigma)
        got_W, got_b = _pair(got, call=call, instance=instance)
        hint = BestEffortHint(lambda: _hint(pi, mu, sigma, _as_plain(got_W), _as_plain(got_b)), generic=HINT)
        scale = scales(pi, mu, sigma)
        for name, got_value, value in (("W", got_W, W), ("b", got_b, b)):
            expect_close_up_to_shift(got_value, value, rtol=RTOL, atol=ATOL, call=call, instance=instance, hint=hint,
                                     name=name, scale=scale[name], scale_of=SCALE_OF[name])
    check_each(zip(instances, answers), judge)
    outcome.note(f"All {len(instances)} answers right up to a common shift (after centring, tolerance "
                 f"{ATOL:g} + {RTOL:g}·S, S = {SCALE_OF['W']} for W, {SCALE_OF['b']} for b).")


@pytest.mark.graded("p2_uniform_public")
def test_uniform_prior_public(student, outcome):
    check(student, _instances(UNIFORM_PUBLIC), outcome)


@pytest.mark.graded("p2_nonuniform_public")
def test_nonuniform_prior_public(student, outcome):
    check(student, _instances(NONUNIFORM_PUBLIC), outcome)


@pytest.mark.graded("p2_random")
def test_random(student, rng, outcome):
    check(student, random_instances(rng), outcome)
