"""P5 on the grader's side: the yardstick latent-variable model the P5 checks judge estimators on.

Numeric only (numpy): the grader never imports SymPy. reference/closed_forms.py re-exports these
names next to their SymPy twins (the p5_*_expr forms), and tests/test_closed_forms.py checks one
against the other. The child builds the same model's sample_prior and likelihood itself
(problems/p5/child.py, gaussian_latent).
"""
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianLatentModel:
    """z ~ N(0, s²), x | z ~ N(z, t²): a latent-variable model with p(x) = N(x | 0, s² + t²).

    sample_prior and likelihood have the signatures the P5 functions take; the other methods give
    the exact p(x) and the bias yardsticks (the numeric twins of the p5_*_expr forms).
    """

    s: float  # prior standard deviation > 0
    t: float  # likelihood standard deviation > 0

    def sample_prior(self, k, rng) -> np.ndarray:
        """k iid draws from N(0, s²), all randomness from the numpy Generator rng."""
        return rng.normal(0.0, self.s, size=k)

    def likelihood(self, x, z) -> np.ndarray:
        """p(x | z_j) = N(x | z_j, t²) for each draw."""
        return _normal_pdf(x, np.asarray(z, dtype=np.float64), self.t**2)

    def marginal(self, x) -> float:
        """p(x) = N(x | 0, s² + t²)."""
        return float(_normal_pdf(x, 0.0, self.s**2 + self.t**2))

    def likelihood_variance(self, x) -> float:
        """Var_z[p(x|z)] = N(x | 0, s² + t²/2)/(2t√π) − p(x)²."""
        second = _normal_pdf(x, 0.0, self.s**2 + self.t**2 / 2) / (2 * self.t * math.sqrt(math.pi))
        return float(second - self.marginal(x) ** 2)

    def likelihood_moment(self, x, power: int) -> float:
        """E_z[p(x|z)^j] = (2πt²)^(−j/2) sqrt(t² / (t² + j s²)) exp(−j x² / (2(t² + j s²)))."""
        spread = self.t**2 + power * self.s**2
        return float((2 * math.pi * self.t**2) ** (-power / 2) * math.sqrt(self.t**2 / spread)
                     * math.exp(-power * x**2 / (2 * spread)))

    def estimator_variance(self, x, k) -> float:
        """Var[A] for A the average of p(x | z_j) over k iid draws: Var_z[p(x|z)] / k."""
        return self.likelihood_variance(x) / k

    def estimator_fourth_central_moment(self, x, k) -> float:
        """E[(A − p(x))⁴] for A the average over k iid draws: (μ₄ + 3(k − 1)σ⁴) / k³, with μ₄ and σ² the
        central moments of p(x|z), μ₄ from the raw moments E[p(x|z)^j], j ≤ 4."""
        p = self.marginal(x)
        m2, m3, m4 = (self.likelihood_moment(x, j) for j in (2, 3, 4))
        mu4 = m4 - 4 * m3 * p + 6 * m2 * p**2 - 3 * p**4
        return (mu4 + 3 * (k - 1) * self.likelihood_variance(x) ** 2) / k**3

    def log_likelihood_variance(self, x) -> float:
        """Var_z[log p(x|z)] = Var[(x − z)²] / (4t⁴) = (s⁴ + 2x²s²) / (2t⁴): the spread of log A for k = 1."""
        return (self.s**4 + 2 * x**2 * self.s**2) / (2 * self.t**4)

    def log_bias_delta(self, x, k) -> float:
        """Delta-method bias of log A with k draws: −Var_z[p(x|z)] / (2k p(x)²)."""
        return -self.likelihood_variance(x) / (2 * k * self.marginal(x) ** 2)

    def log_bias_k1(self, x) -> float:
        """Exact E[log A] − log p(x) for k = 1."""
        expected_log = -0.5 * math.log(2 * math.pi * self.t**2) - (x**2 + self.s**2) / (2 * self.t**2)
        return expected_log - math.log(self.marginal(x))


def p5_gaussian_latent_model(s, t) -> GaussianLatentModel:
    """The P5 yardstick model z ~ N(0, s²), x | z ~ N(z, t²), with s, t > 0."""
    if not (s > 0 and t > 0):
        raise ValueError(f"need s > 0 and t > 0, got s={s!r}, t={t!r}")
    return GaussianLatentModel(float(s), float(t))


def _normal_pdf(value, mean, variance):
    return np.exp(-((value - mean) ** 2) / (2 * variance)) / np.sqrt(2 * np.pi * variance)
