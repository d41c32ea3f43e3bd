"""P2: Gaussian class-conditionals with a shared isotropic covariance give a softmax (reference).

With p(y) = π_y and p(x|y) = N(x | μ_y, σ²I), Bayes' rule gives
p(y|x) ∝ π_y exp(−‖x − μ_y‖²/(2σ²)) ∝ exp(xᵀμ_y/σ² + log π_y − ‖μ_y‖²/(2σ²)),
because the factor (2πσ²)^(−n/2) exp(−‖x‖²/(2σ²)) is the same for every class and cancels.
"""

import numpy as np


def softmax_parameters(pi, mu, sigma):
    """Return (W, b) with p(y|x) = softmax(W x + b)_y: W (k, n) = μ/σ², b (k,) = log π − ‖μ_y‖²/(2σ²).

    pi: (k,) class probabilities; mu: (k, n) class means; sigma: the shared standard deviation > 0.
    """
    pi = np.asarray(pi, dtype=np.float64)  # (k,)
    mu = np.asarray(mu, dtype=np.float64)  # (k, n)
    variance = float(sigma) ** 2
    W = mu / variance  # (k, n)
    b = np.log(pi) - np.sum(mu**2, axis=1) / (2.0 * variance)  # (k,)
    return W, b
