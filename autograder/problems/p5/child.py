"""P5 on the child's side: many runs of a Monte Carlo estimator on a Gaussian latent model.

Runs in the untrusted child (copied there by the sandbox with the child runtime): imports only
the standard library, numpy and the child runtime.
"""
from __future__ import annotations

import numpy as np

from ...child.harness import _bad, harness, real_or_none


def gaussian_latent(s: float, t: float):
    """(sample_prior, likelihood) of z ~ N(0, s²), x | z ~ N(z, t²), with the P5 signatures
    (problems/p5/model.py has the same model, with p(x) = N(x | 0, s² + t²), for the grader).

    Plain functions, new for each call: no bound methods (``__self__`` would lead to a model
    object), no defaults, nothing in the module's globals; their closures hold only the two
    numbers they need. Python cannot hide a function's own state from code in the same process
    (gc and frames reach it), so the P5 checks are built so that knowing s and t gains nothing:
    they judge the estimator's mean and its variance, and that its draws come from the rng passed
    in; the closed-form p(x) alone fails them (tests/mutants tries)."""
    scale, inverse_two_variance = float(s), 1.0 / (2.0 * float(t) ** 2)
    normaliser = float(1.0 / np.sqrt(2.0 * np.pi * float(t) ** 2))

    def sample_prior(k, rng):
        """k iid draws from the prior p(z), from the numpy Generator rng."""
        return rng.normal(0.0, scale, size=k)

    def likelihood(x, z):
        """p(x | z_j) for each draw z_j (elementwise over z)."""
        z = np.asarray(z, dtype=np.float64)
        return normaliser * np.exp(-((x - z) ** 2) * inverse_two_variance)

    return sample_prior, likelihood


@harness("p5_estimates")
def p5_estimates(child, *, function, s, t, x, k, runs, rng_seed):
    """``runs`` calls of ``submission.p5_monte_carlo.<function>(x, k, sample_prior, likelihood,
    rng)`` on the model gaussian_latent(s, t), all with the one Generator
    ``np.random.default_rng(rng_seed)`` (successive runs get independent draws).

    Returns {"values": float64 array of runs} or {"bad": {"run", "got", "type"}} for the first
    return value that is not a real number. Non-finite values are returned as they are."""
    estimator = child.function("p5_monte_carlo", function)
    sample_prior, likelihood = gaussian_latent(s, t)
    rng = np.random.default_rng(rng_seed)
    label = f"{function}(x={x!r}, k={k!r}, sample_prior, likelihood, rng)"
    values = np.empty(int(runs))
    for run in range(int(runs)):
        value = child.invoke(estimator, (x, k, sample_prior, likelihood, rng), {}, label=label)
        real = real_or_none(value)
        if real is None:
            return {"bad": {"run": run, **_bad(value)}}
        values[run] = real
    return {"values": values}
