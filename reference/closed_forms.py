"""Closed forms and numeric yardsticks for P1–P5, for the trusted grader and its tests.

Symbolic pieces are SymPy expressions built from whatever the caller passes (symbols for proofs,
numbers for exact values); numeric pieces are float64 numpy. Nothing runs at import time.

Public API (the grader calls these):
- P1: p1_identity(p_xy, q_y_given_x) -> P1Identity
- P2: p2_softmax_parameters(pi, mu, sigma) -> (W, b); p2_posterior_and_softmax(x, pi, mu, sigma)
      -> (posterior, softmax); p2_posterior(x, pi, mu, sigma) -> ndarray (numeric Bayes' rule)
- P3: p3_full_joint(k), p3_independent(k), p3_markov(k, m, *, first_term) -> SymPy value;
      p3_*_formula(n[, m]) -> the unevaluated Sum/Product in P3_K[1..n]
- P4: p4_mixture(...) -> P4Mixture; p4_marginal_x2(mu1, sigma1, mu2, sigma2, grid) -> ndarray;
      p4_gaussianity_gap(mu1, sigma1, mu2, sigma2) -> P4Gap; p4_gap_of_mixture(P4Mixture) -> P4Gap;
      P4_TV_THRESHOLD (numeric: defined in autograder/problems/p4/marginal.py, where the P4
      checks use them, and re-exported here)
- P5: p5_marginal_expr, p5_expected_estimator_expr, p5_likelihood_second_moment_expr,
      p5_log_bias_delta_expr, p5_log_bias_k1_expr (SymPy); p5_gaussian_latent_model(s, t)
      -> GaussianLatentModel (numeric sampler, likelihood, p(x) and bias yardsticks; defined in
      autograder/problems/p5/model.py, where the P5 checks use it, and re-exported here)

The grader's process never imports this module (nor SymPy): the checks use the numeric pieces
from their problems' folders; the tests check those against the SymPy forms here.
"""

from typing import NamedTuple

import numpy as np
import sympy as sp

# ----------------------------------------------------------------------------------------------
# P1: E_p̂(x)[KL(p̂(y|x) ‖ q(y|x))] = C − E_p̂[log q(y|x)], C = E_p̂[log p̂(y|x)] = −H(Y|X)


class P1Identity(NamedTuple):
    """The three sides of the P1 identity as SymPy expressions, and their residual."""

    expected_kl: sp.Expr  # Σ p̂(x,y) log(p̂(y|x) / q(y|x)) over cells with p̂(x,y) ≠ 0
    theta_independent_term: sp.Expr  # C = Σ p̂(x,y) log p̂(y|x)
    expected_log_likelihood: sp.Expr  # Σ p̂(x,y) log q(y|x)
    residual: sp.Expr  # expected_kl − (C − expected_log_likelihood): simplifies to 0


def p1_identity(p_xy, q_y_given_x) -> P1Identity:
    """Build both sides of the P1 identity from a (|X|, |Y|) p̂ and q (SymPy Matrix or nested lists).

    Entries may be symbols or numbers. A cell whose p̂ entry is exactly zero is left out (0·log 0 = 0),
    so a row with p̂(x) = 0 contributes nothing. With positive symbols, `expand(expand_log(residual))` is 0;
    with numbers, each field evaluates (float(...)) to the quantity the P1 functions must return.
    """
    p, q = sp.Matrix(p_xy), sp.Matrix(q_y_given_x)
    if p.shape != q.shape:
        raise ValueError(f"p_xy has shape {p.shape} but q_y_given_x has shape {q.shape}")
    kl = c = ell = sp.S.Zero
    for x in range(p.rows):
        p_x = sum(p[x, :])
        for y in range(p.cols):
            if p[x, y].is_zero:  # 0·log 0 = 0: the cell is not in the sum at all
                continue
            p_y_given_x = p[x, y] / p_x
            kl += p[x, y] * sp.log(p_y_given_x / q[x, y])
            c += p[x, y] * sp.log(p_y_given_x)
            ell += p[x, y] * sp.log(q[x, y])
    return P1Identity(kl, c, ell, kl - (c - ell))


# ----------------------------------------------------------------------------------------------
# P2: π_y N(x | μ_y, σ²I) / Σ_i π_i N(x | μ_i, σ²I) = softmax(W x + b)_y


def p2_softmax_parameters(pi, mu, sigma):
    """The course's answer in SymPy: W = μ/σ² (k×n Matrix) and b_y = log π_y − ‖μ_y‖²/(2σ²) (list of k)."""
    mu = sp.Matrix(mu)
    W = mu / sigma**2
    b = [sp.log(pi[y]) - (mu[y, :] * mu[y, :].T)[0] / (2 * sigma**2) for y in range(mu.rows)]
    return W, b


def p2_posterior_and_softmax(x, pi, mu, sigma):
    """Return (posterior, softmax): two lists of k SymPy expressions that are equal term by term.

    posterior[y] = π_y N(x|μ_y, σ²I) / Σ_i π_i N(x|μ_i, σ²I), with the full Gaussian density
    (normalising constant included); softmax[y] = exp(xᵀw_y + b_y) / Σ_i exp(xᵀw_i + b_i) with
    (W, b) from p2_softmax_parameters. x: n entries; pi: k; mu: k×n; sigma > 0.
    """
    x, mu = sp.Matrix(x), sp.Matrix(mu)
    n = x.rows

    def density(mean):  # N(x | mean, σ²I) for a column vector mean
        d = x - mean
        return sp.exp(-(d.T * d)[0] / (2 * sigma**2)) / (2 * sp.pi * sigma**2) ** sp.Rational(n, 2)

    joint = [pi[y] * density(mu[y, :].T) for y in range(mu.rows)]
    posterior = [j / sum(joint) for j in joint]
    W, b = p2_softmax_parameters(pi, mu, sigma)
    exps = [sp.exp((W[y, :] * x)[0] + b[y]) for y in range(mu.rows)]
    softmax = [e / sum(exps) for e in exps]
    return posterior, softmax


def p2_posterior(x, pi, mu, sigma) -> np.ndarray:
    """Numeric p(y|x) by Bayes' rule in log space, independent of any softmax parametrisation.

    x: (m, n) points (or (n,)); pi: (k,); mu: (k, n); sigma > 0. Returns (m, k) (or (k,)), rows
    summing to 1, stable for far-away x (log-sum-exp).
    """
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)  # (k, n)
    points = np.atleast_2d(x)  # (m, n)
    sq_dist = np.sum((points[:, None, :] - mu[None, :, :]) ** 2, axis=-1)  # (m, k)
    # The normalising constant of N(x|μ_y, σ²I) is shared by all classes, so it cancels.
    log_joint = np.log(np.asarray(pi, dtype=np.float64))[None, :] - sq_dist / (2.0 * float(sigma) ** 2)
    log_joint -= log_joint.max(axis=1, keepdims=True)
    posterior = np.exp(log_joint)
    posterior /= posterior.sum(axis=1, keepdims=True)
    return posterior if x.ndim == 2 else posterior[0]


# ----------------------------------------------------------------------------------------------
# P3: free parameters of a joint over X_1..X_n with k_i values each

P3_K = sp.IndexedBase("k")  # the cardinalities k_1..k_n in the formulas (1-based, as in the handout)
_I, _J = sp.symbols("i j", integer=True)


def p3_full_joint_formula(n):
    """∏_{i=1}^{n} k_i − 1, unevaluated (SymPy Product over P3_K)."""
    return sp.Product(P3_K[_I], (_I, 1, n)) - 1


def p3_independent_formula(n):
    """Σ_{i=1}^{n} (k_i − 1), unevaluated (SymPy Sum over P3_K)."""
    return sp.Sum(P3_K[_I] - 1, (_I, 1, n))


def p3_markov_formula(n, m, *, first_term="joint"):
    """(first term) + Σ_{i=m+1}^{n} (k_i − 1) ∏_{j=i−m}^{i−1} k_j, unevaluated.

    first_term="joint": ∏_{i≤m} k_i − 1 (a full joint over X_1..X_m); first_term="chain":
    Σ_{i≤m} (k_i − 1) ∏_{j<i} k_j (the chain rule over X_1..X_m; the empty product is 1). The two
    are equal (the chain form telescopes).
    """
    if first_term == "joint":
        head = sp.Product(P3_K[_J], (_J, 1, m)) - 1
    elif first_term == "chain":
        head = sp.Sum((P3_K[_I] - 1) * sp.Product(P3_K[_J], (_J, 1, _I - 1)), (_I, 1, m))
    else:
        raise ValueError(f"first_term must be 'joint' or 'chain', got {first_term!r}")
    tail = sp.Sum((P3_K[_I] - 1) * sp.Product(P3_K[_J], (_J, _I - m, _I - 1)), (_I, m + 1, n))
    return head + tail


def _p3_evaluate(formula, k):
    """Expand `formula` for n = len(k) and put k's entries in for k_1..k_n (ints stay exact)."""
    values = [sp.Integer(int(v)) if isinstance(v, (int, np.integer)) else sp.sympify(v) for v in k]
    return formula.doit().xreplace({P3_K[i + 1]: v for i, v in enumerate(values)})


def p3_full_joint(k):
    """p3a for cardinalities k (ints or symbols): an exact SymPy Integer (int(...) is exact) or a polynomial."""
    return _p3_evaluate(p3_full_joint_formula(len(k)), k)


def p3_independent(k):
    """p3b for cardinalities k (ints or symbols), from the Sum form."""
    return _p3_evaluate(p3_independent_formula(len(k)), k)


def p3_markov(k, m, *, first_term="joint"):
    """p3c for cardinalities k and order m, 1 ≤ m < len(k), with either first-term form."""
    if not 1 <= m < len(k):
        raise ValueError(f"markov order m must satisfy 1 <= m < n = {len(k)}, got m = {m}")
    return _p3_evaluate(p3_markov_formula(len(k), m, first_term=first_term), k)


# ----------------------------------------------------------------------------------------------
# P4: numeric, in the P4 problem's folder (the grader uses it without SymPy); re-exported here

from autograder.problems.p4.marginal import (P4_TV_THRESHOLD, P4_X1_HALF_WIDTH, P4Gap, P4Mixture,  # noqa: E402,F401
                                             p4_gap_of_mixture, p4_gaussianity_gap, p4_marginal_x2, p4_mixture)
from autograder.problems.p5.model import GaussianLatentModel, p5_gaussian_latent_model  # noqa: E402,F401


# ----------------------------------------------------------------------------------------------
# P5: z ~ N(0, s²), x | z ~ N(z, t²), so p(x) = N(x | 0, s² + t²); A = (1/k) Σ_j p(x | z_j)


def _normal_expr(value, mean, variance):
    return sp.exp(-((value - mean) ** 2) / (2 * variance)) / sp.sqrt(2 * sp.pi * variance)


def p5_marginal_expr(x, s, t):
    """The closed form p(x) = N(x | 0, s² + t²) as a SymPy expression."""
    return _normal_expr(x, 0, s**2 + t**2)


def p5_expected_estimator_expr(x, s, t):
    """E[A] = E_z[N(x | z, t²)], z ~ N(0, s²), as SymPy computes the integral (s, t positive symbols).

    Promise: equals p5_marginal_expr(x, s, t) (tests simplify the difference to 0), i.e. A is unbiased.
    """
    z = sp.Dummy("z", real=True)
    return sp.integrate(_normal_expr(x, z, t**2) * _normal_expr(z, 0, s**2), (z, -sp.oo, sp.oo))


def p5_likelihood_second_moment_expr(x, s, t, *, integrate_symbolically=False):
    """E_z[N(x | z, t²)²] = N(x | 0, s² + t²/2) / (2t√π); with integrate_symbolically=True, SymPy's integral."""
    if integrate_symbolically:
        z = sp.Dummy("z", real=True)
        return sp.integrate(_normal_expr(x, z, t**2) ** 2 * _normal_expr(z, 0, s**2), (z, -sp.oo, sp.oo))
    # N(x|z,t²)² = N(x|z, t²/2) / (2t√π), and integrating that against N(z|0,s²) convolves variances.
    return _normal_expr(x, 0, s**2 + t**2 / 2) / (2 * t * sp.sqrt(sp.pi))


def p5_log_bias_delta_expr(x, s, t, k):
    """Second-order (delta-method) bias of log A: −Var_z[p(x|z)] / (2k p(x)²).

    E[log A] − log p(x) = −Var[A]/(2 p(x)²) + O(k⁻²) with Var[A] = Var_z[p(x|z)]/k; always < 0.
    """
    p = p5_marginal_expr(x, s, t)
    return -(p5_likelihood_second_moment_expr(x, s, t) - p**2) / (2 * k * p**2)


def p5_log_bias_k1_expr(x, s, t):
    """Exact bias of log A for k = 1: E_z[log N(x|z, t²)] − log p(x) = −½log(2πt²) − (x² + s²)/(2t²) − log p(x)."""
    return -sp.log(2 * sp.pi * t**2) / 2 - (x**2 + s**2) / (2 * t**2) - sp.log(p5_marginal_expr(x, s, t))
