"""P4: forward and reverse autoregressive Gaussians (n = 2).

Forward: p_f(x) = N(x_1 | mu_1, sigma_1^2) N(x_2 | mu_2(x_1), sigma_2^2(x_1)).
Reverse: p_r(x) = N(x_2 | mu_2', sigma_2'^2) N(x_1 | mu_1'(x_2), sigma_1'^2(x_2)).
"""


def same_hypothesis_space():
    """Do the forward and reverse models cover the same distributions? Return a bool."""
    raise NotImplementedError


def counterexample():
    """A forward model for n = 2 whose x_2-marginal is not Gaussian, as a dict:
    mu1 (float), sigma1 (float > 0), mu2 and sigma2 (callables float -> float, sigma2 > 0).
    The grader computes the marginal of x_2 numerically."""
    raise NotImplementedError
