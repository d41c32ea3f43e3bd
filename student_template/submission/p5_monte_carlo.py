"""P5: Monte Carlo estimates of p(x) = E_{p(z)}[p(x|z)].

sample_prior(k, rng) returns k latent draws z^(1..k); likelihood(x, z) returns p(x | z_j) for
each draw; rng is a numpy Generator: use it for all randomness. Return Python floats.
"""
import numpy as np


def estimate_marginal(x, k, sample_prior, likelihood, rng):
    """A = (1/k) sum_j p(x | z^(j)), z^(j) iid from p(z)."""
    raise NotImplementedError


def log_estimate_marginal(x, k, sample_prior, likelihood, rng):
    """log A for the same A."""
    raise NotImplementedError


def log_estimator_is_unbiased():
    """Is log A an unbiased estimator of log p(x)? Return a bool."""
    raise NotImplementedError
