"""P5: Monte Carlo estimates of a marginal likelihood p(x) = E_{z~p(z)}[p(x|z)] (reference).

A = (1/k) Σ_j p(x | z⁽ʲ⁾) with z⁽ʲ⁾ iid from p(z) is unbiased: E[A] = p(x). Its logarithm is not:
log is strictly concave, so by Jensen E[log A] < log E[A] = log p(x) unless A is constant; a
second-order expansion gives a bias of about −Var[p(x|z)] / (2k p(x)²), shrinking like 1/k.
"""

import numpy as np


def estimate_marginal(x, k, sample_prior, likelihood, rng):
    """A = mean of likelihood(x, z) over k draws z = sample_prior(k, rng): an unbiased estimate of p(x).

    All randomness comes from rng (one call to sample_prior); returns a Python float.
    """
    z = sample_prior(k, rng)  # k latent draws
    return float(np.mean(np.asarray(likelihood(x, z), dtype=np.float64)))


def log_estimate_marginal(x, k, sample_prior, likelihood, rng):
    """log A for the same A as estimate_marginal (same draws from rng): a downward-biased estimate of log p(x).

    Returns a Python float (−inf if every likelihood value is 0).
    """
    z = sample_prior(k, rng)  # k latent draws
    # Same draws and arithmetic as estimate_marginal, then the log: log A is the estimator asked for.
    # (No log-sum-exp needed: the mean is at least max/k, so it underflows only if every value does.)
    mean = float(np.mean(np.asarray(likelihood(x, z), dtype=np.float64)))
    with np.errstate(divide="ignore"):  # A = 0 gives −inf, which is log 0
        return float(np.log(mean))


def log_estimator_is_unbiased():
    """False: E[log A] ≤ log E[A] = log p(x) (Jensen), strictly unless A is constant."""
    return False
