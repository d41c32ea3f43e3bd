"""P4: forward and reverse autoregressive Gaussians do not cover the same distributions (reference).

For n = 2 the reverse model's marginal p_r(x_2) = N(x_2 | μ̂_2, σ̂_2²) is a single Gaussian, while the
forward model's p_f(x_2) = ∫ N(x_1 | μ_1, σ_1²) N(x_2 | μ_2(x_1), σ_2²(x_1)) dx_1 can be any continuous
mixture of Gaussians. The counterexample below makes it the two-component mixture
½ N(0, 0.5²) + ½ N(4, 0.5²), which is bimodal and hence no Gaussian, so no reverse model matches it.
"""

import numpy as np


def same_hypothesis_space():
    """False: some forward model has a non-Gaussian x_2-marginal, which no reverse model has."""
    return False


# Module-level functions, not lambdas, so that the callables pickle by reference (the grader may
# run a submission in another process). Each takes a Python float and returns a float; given a
# numpy array they work elementwise (np.where) and return an array of the same shape, so a grader
# may also call them vectorised.
def _mu2(x1):
    """μ_2(x_1) = 0 for x_1 ≤ 0 and 4 otherwise: the step that splits p_f(x_2) into two bumps."""
    values = np.where(np.asarray(x1, dtype=np.float64) <= 0.0, 0.0, 4.0)
    return float(values) if values.ndim == 0 else values


def _sigma2(x1):
    """σ_2(x_1) = 0.5 for every x_1: narrow enough that the bumps at 0 and 4 stay apart."""
    values = np.full(np.shape(x1), 0.5)
    return float(values) if values.ndim == 0 else values


def counterexample():
    """A forward model for n = 2 whose x_2-marginal, ½ N(0, 0.25) + ½ N(4, 0.25), is bimodal.

    Returns dict(mu1=float, sigma1=float > 0, mu2=callable, sigma2=callable > 0); x_1 ~ N(0, 1) puts
    probability ½ on each side of the step in μ_2.
    """
    return {"mu1": 0.0, "sigma1": 1.0, "mu2": _mu2, "sigma2": _sigma2}
