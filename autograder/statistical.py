"""Statistical tests for the checks, each failing a correct answer with probability at most
``FALSE_FAIL`` (1e-6) and reporting the smallest difference it detects, and the feedback for a
failed one.

- Means: ``mean_test``, ``variance_test`` and ``two_sample_mean_test`` give a ``MeanTest``;
  ``expect_mean`` turns a failed one into feedback.
- Draws from a known categorical distribution: ``multinomial_fit_test`` (one group of draws),
  ``pooled_fit_test`` (independent groups) and ``binomial_too_few`` (one cell's count);
  ``expect_fit`` turns a failed fit into feedback.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .compare import _fail

# -- statistical tests ---------------------------------------------------------------------------
FALSE_FAIL = 1e-6
"""The largest probability with which any statistical check may fail a correct answer."""
NORMAL_MARGIN = 10.0
"""Tests that rely on the normal approximation of a mean aim at FALSE_FAIL / NORMAL_MARGIN, so
that the approximation's error (skewness terms, for means of 10⁴ or more draws) cannot push the
real false-fail probability above FALSE_FAIL."""
_POWER_Z = NormalDist().inv_cdf(0.999)  # 3.09: a bias this many standard errors past the threshold is caught 99.9 % of the time


def normal_threshold(false_fail: float) -> float:
    """z with P(|N(0, 1)| > z) = false_fail (two-sided): 4.89 for 1e-6, 5.33 for 1e-7."""
    return NormalDist().inv_cdf(1.0 - false_fail / 2.0)


@dataclass(frozen=True)
class MeanTest:
    """The outcome of testing that a sample mean equals what a correct answer gives on average.

    observed: the sample mean (for two samples: the mean of the first).
    expected: the value a correct answer's mean has in expectation (for two samples: the mean of
        the reference sample, an estimate of it).
    standard_error: of observed − expected (both samples' noise for two samples).
    threshold: the test passes when |observed − expected| ≤ threshold.
    false_fail: a bound on the probability that a correct answer fails.
    method: how the threshold was set, for feedback.
    samples: how many draws the observed mean averages.
    """

    observed: float
    expected: float
    standard_error: float
    threshold: float
    false_fail: float
    method: str
    samples: int

    @property
    def difference(self) -> float:
        return self.observed - self.expected

    @property
    def statistic(self) -> float:
        """The difference in standard errors."""
        if self.standard_error > 0:
            return self.difference / self.standard_error
        return math.copysign(math.inf, self.difference) if self.difference else 0.0

    @property
    def passed(self) -> bool:
        return abs(self.difference) <= self.threshold

    @property
    def detectable(self) -> float:
        """The smallest true difference this test catches with probability ≥ 0.999:
        threshold + 3.09 standard errors."""
        return self.threshold + _POWER_Z * self.standard_error

    def difference_text(self) -> str:
        """"difference +0.012 (+3.10 standard errors of 0.0039)"."""
        return f"difference {self.difference:+.3g} ({self.statistic:+.2f} standard errors of {self.standard_error:.2g})"

    def band_text(self) -> str:
        """"± 0.018 (method: a correct answer fails with probability ≤ …; … is caught 99.9 % of the time)"."""
        return (f"± {self.threshold:.2g} ({self.method}: a correct answer fails with probability ≤ {self.false_fail:.1e}; "
                f"a true difference of {self.detectable:.2g} or more is caught 99.9 % of the time)")

    def summary(self) -> str:
        return f"{self.difference_text()}; pass band {self.band_text()}"


def _finite_sample(samples, label: str) -> np.ndarray:
    array = np.asarray(samples, dtype=np.float64).reshape(-1)
    if array.size < 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"{label} must hold at least two finite numbers")  # checks test finiteness first
    return array


def mean_test(samples, expected: float, *, sd: float | None = None, bound: float | None = None,
              false_fail: float = FALSE_FAIL) -> MeanTest:
    """Test that iid ``samples`` have mean ``expected``.

    - ``sd`` and ``bound`` given (a correct answer's draws have standard deviation ≤ sd and lie
      within ``bound`` of their mean): Bernstein's inequality, P(|mean − μ| ≥ ε) ≤
      2 exp(−N ε² / (2 sd² + 2 bound ε / 3)), solved for ε at ``false_fail``. Exact for any N, no
      normal approximation.
    - ``sd`` given alone: normal approximation with that sd, at false_fail / NORMAL_MARGIN.
    - neither: normal approximation with the sample's sd (ddof 1), at false_fail / NORMAL_MARGIN.
    ``samples`` must be finite (check that first, with feedback)."""
    array = _finite_sample(samples, "samples")
    n = array.size
    if sd is not None and bound is not None:
        log_term = math.log(2.0 / false_fail)
        linear = 2.0 * log_term * bound / 3.0
        threshold = (linear + math.sqrt(linear**2 + 8.0 * n * log_term * sd**2)) / (2.0 * n)
        method, standard_error = "Bernstein's inequality", sd / math.sqrt(n)
    else:
        standard_error = (sd if sd is not None else float(array.std(ddof=1))) / math.sqrt(n)
        threshold = normal_threshold(false_fail / NORMAL_MARGIN) * standard_error
        method = f"normal approximation, {normal_threshold(false_fail / NORMAL_MARGIN):.2f} standard errors"
    return MeanTest(float(array.mean()), float(expected), standard_error, threshold, false_fail, method, n)


def variance_test(samples, *, mean: float, variance: float, fourth_central_moment: float, bound: float,
                  false_fail: float = FALSE_FAIL) -> MeanTest:
    """Test that iid ``samples`` have variance ``variance``, given what a correct answer's draws
    satisfy: mean ``mean``, E[(X − mean)⁴] = ``fourth_central_moment``, |X − mean| ≤ ``bound``.

    observed is the sample variance S² (ddof 1, centred at the sample mean, so a wrong mean alone
    does not fail it). For correct draws S² = n/(n−1)·(V̄ − (X̄ − mean)²) with V̄ the mean of
    (X − mean)²: Bernstein's inequality bounds |V̄ − variance| (sd of (X − mean)² from the fourth
    moment, range bound²) at false_fail/2 and (X̄ − mean)² (sd from the variance, range bound) at
    false_fail/2, so |S² − variance| ≤ n/(n−1)·(ε_V + ε_X²) + variance/(n−1) fails a correct answer
    with probability ≤ false_fail. Exact for any n, no normal approximation."""
    array = _finite_sample(samples, "samples")
    n = array.size
    spread = math.sqrt(max(fourth_central_moment - variance**2, 0.0))
    squares = mean_test((array - mean) ** 2, variance, sd=spread, bound=max(bound**2 - variance, variance),
                        false_fail=false_fail / 2)
    location = mean_test(array, mean, sd=math.sqrt(variance), bound=bound, false_fail=false_fail / 2)
    threshold = n / (n - 1) * (squares.threshold + location.threshold**2) + variance / (n - 1)
    return MeanTest(float(array.var(ddof=1)), float(variance), spread / math.sqrt(n), threshold, false_fail,
                    "Bernstein's inequality for the squared deviations and for the mean", n)


def two_sample_mean_test(samples, reference_samples, *, false_fail: float = FALSE_FAIL) -> MeanTest:
    """Test that two independent iid samples have the same mean (Welch's statistic, normal
    approximation at false_fail / NORMAL_MARGIN): observed is the first sample's mean, expected
    the reference sample's, and the standard error combines both sample variances."""
    first = _finite_sample(samples, "samples")
    second = _finite_sample(reference_samples, "reference_samples")
    standard_error = math.sqrt(first.var(ddof=1) / first.size + second.var(ddof=1) / second.size)
    z = normal_threshold(false_fail / NORMAL_MARGIN)
    return MeanTest(float(first.mean()), float(second.mean()), standard_error, z * standard_error, false_fail,
                    f"two-sample normal approximation, {z:.2f} standard errors", int(first.size))


def expect_mean(test: MeanTest, *, call: str, quantity: str, hint: str = "", instance: str = "") -> None:
    """Raise CheckFailed with the test's numbers when it did not pass. ``quantity`` names what
    was averaged ("the mean of estimate_marginal(...) over 20000 runs")."""
    if not test.passed:
        _fail(call=call, hint=hint, instance=instance,
              got=f"values whose {quantity} is {test.observed:.6g}: {test.difference_text()}",
              expected=f"{test.expected:.6g} {test.band_text()}")


# -- goodness of fit of draws from a known categorical distribution ------------------------------
def kl_threshold(draws: int, cells: int, false_fail: float = FALSE_FAIL) -> float:
    """The divergence ε with P(D(p̂ ‖ p) ≥ ε) ≤ ``false_fail`` for the empirical distribution p̂
    of ``draws`` iid draws from any distribution p over ``cells`` categories.

    Agrawal's finite-sample bound (R. Agrawal, "Finite-sample concentration of the multinomial in
    relative entropy", IEEE Trans. Inf. Theory 2020: the moment generating function of D(p̂ ‖ p)
    is at most that of a Gamma(k − 1, rate n)) gives, for ε > (k − 1)/n,
    P(D ≥ ε) ≤ e^{−nε} (e·n·ε / (k − 1))^{k − 1}; this solves it for ε. It holds for every n and
    p: no asymptotic χ² approximation and no minimum expected count per cell."""
    n, dof, log_alpha = int(draws), int(cells) - 1, math.log(1.0 / false_fail)
    if n < 1:
        raise ValueError("draws must be at least 1")
    if dof <= 0:
        return log_alpha / n

    def excess(x: float) -> float:  # log of the bound at nε = x, minus log(false_fail); increasing for x > dof
        return -x + dof * (1.0 + math.log(x / dof)) + log_alpha

    low, high = float(dof), dof + log_alpha + 1.0
    while excess(high) > 0:
        high *= 2.0
    for _ in range(200):  # bisection to full double precision
        middle = 0.5 * (low + high)
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return high / n


@dataclass(frozen=True)
class FitTest:
    """The outcome of testing that draws come from a known categorical distribution.

    labels: a name per cell (after pooling), e.g. "token 1012"; the pooled cell is "other".
    observed: draws per cell.
    expected: the probability of each cell under the distribution tested against.
    divergence: D(p̂ ‖ p) in nats, the empirical distribution's relative entropy from expected
        (infinite when a cell of probability 0 was drawn); G = 2·draws·divergence.
    threshold: the test fails when divergence ≥ threshold (see ``kl_threshold``).
    false_fail: the bound on the probability that draws from the expected distribution fail.
    """

    labels: tuple
    observed: np.ndarray
    expected: np.ndarray
    divergence: float
    threshold: float
    false_fail: float

    @property
    def draws(self) -> int:
        return int(self.observed.sum())

    @property
    def passed(self) -> bool:
        return self.divergence < self.threshold

    def summary(self) -> str:
        return (f"G = 2·n·D = {2 * self.draws * self.divergence:.1f} over {len(self.labels)} cells, pass band "
                f"G < {2 * self.draws * self.threshold:.1f} (a G-test with Agrawal's finite-sample bound, exact for "
                f"any number of draws: draws from the expected distribution fail with probability ≤ {self.false_fail:.0e})")

    def table(self, rows: int = 8) -> str:
        """The cells that differ most, as 'label: observed (share) vs expected share' lines."""
        n = max(self.draws, 1)
        share = self.observed / n
        order = np.argsort(-np.abs(share - self.expected), kind="stable")[:rows]
        return "\n".join(f"  {self.labels[i]}: drawn {int(self.observed[i])} times ({share[i]:.1%}), "
                         f"expected {self.expected[i]:.1%}" for i in order)


def multinomial_fit_test(counts, probabilities, *, labels=None, pool=None, min_expected: float = 10.0,
                         false_fail: float = FALSE_FAIL) -> FitTest:
    """Test that ``counts`` (draws per category) come from ``probabilities`` (summing to 1).

    Categories whose expected count is below ``min_expected``, and those marked in the boolean
    mask ``pool``, are merged into one cell "other" first (fewer cells lower the threshold; a
    merge of categories of a multinomial is a multinomial, so the bound still holds). A draw of a
    category of probability 0 that is not pooled makes the divergence infinite: such a draw
    never comes from the expected distribution. See ``kl_threshold`` for the false-fail bound."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if counts.shape != probabilities.shape or counts.size == 0 or (counts < 0).any():
        raise ValueError("counts and probabilities must be non-empty, of one shape, counts non-negative")
    if (probabilities < 0).any() or abs(probabilities.sum() - 1.0) > 1e-9:
        raise ValueError("probabilities must be non-negative and sum to 1")
    labels = [str(i) for i in range(counts.size)] if labels is None else [str(label) for label in labels]
    n = int(counts.sum())
    merged = (probabilities * n < min_expected) & (probabilities > 0)
    if pool is not None:
        merged |= np.asarray(pool, dtype=bool).reshape(-1)
    keep = ~merged & ((probabilities > 0) | (counts > 0))  # impossible cells matter only when drawn
    observed = counts[keep]
    expected = probabilities[keep]
    names = [label for label, kept in zip(labels, keep) if kept]
    if merged.any():
        observed = np.append(observed, counts[merged].sum())
        expected = np.append(expected, probabilities[merged].sum())
        names.append("other")
    drawn = observed > 0
    if n == 0:
        divergence = 0.0
    elif (expected[drawn] == 0).any():
        divergence = math.inf
    else:
        share = observed[drawn] / n
        divergence = float(np.sum(share * np.log(share / expected[drawn])))
    cells = int(np.count_nonzero(expected > 0))
    return FitTest(tuple(names), observed, expected, max(divergence, 0.0), kl_threshold(max(n, 1), cells, false_fail),
                   false_fail)


@dataclass(frozen=True)
class PooledFit:
    """Several independent goodness-of-fit tests judged as one (e.g. the second sampled token's
    distribution given each first token): G = 2 Σ_g n_g D_g over the groups g.

    By Agrawal's bound each n_g D_g has a moment generating function at most that of a
    Gamma(cells_g − 1, 1); independent groups add, so Σ n_g D_g is dominated by a Gamma(d, 1) with
    d = Σ_g (cells_g − 1), and P(Σ n_g D_g ≥ x) ≤ e^{−x} (e x / d)^d: the threshold solves that at
    false_fail, for any group sizes, as ``kl_threshold`` does for one group."""

    groups: tuple
    statistic: float  # Σ_g n_g D_g
    threshold: float  # the test fails when statistic ≥ threshold
    false_fail: float

    @property
    def passed(self) -> bool:
        return self.statistic < self.threshold

    def summary(self) -> str:
        cells = sum(len(g.labels) for g in self.groups)
        return (f"G = {2 * self.statistic:.1f} over {len(self.groups)} groups and {cells} cells, pass band G < "
                f"{2 * self.threshold:.1f} (a pooled G-test with Agrawal's finite-sample bound: draws from the expected "
                f"distributions fail with probability ≤ {self.false_fail:.0e})")


def pooled_fit_test(tests, *, false_fail: float = FALSE_FAIL) -> PooledFit:
    """Pool FitTests of independent groups of draws into one test (see PooledFit)."""
    tests = tuple(tests)
    statistic = sum(t.draws * t.divergence for t in tests)
    dof = sum(max(int(np.count_nonzero(t.expected > 0)) - 1, 0) for t in tests)
    return PooledFit(tests, float(statistic), kl_threshold(1, dof + 1, false_fail), false_fail)


def binomial_too_few(count: int, draws: int, probability: float, *, false_fail: float) -> bool:
    """Whether ``count`` successes in ``draws`` trials are too few for success probability
    ``probability``: Chernoff's bound P(X ≤ c) ≤ exp(−n·KL(c/n ‖ p)) for c < n·p is at most
    false_fail (the bound is above the true tail, so the false-fail probability is ≤ false_fail)."""
    if draws <= 0 or probability <= 0.0 or count >= draws * probability:
        return False
    share = count / draws
    kl = (share * math.log(share / probability) if share > 0 else 0.0) + \
        (1 - share) * math.log((1 - share) / (1 - probability))
    return -draws * kl <= math.log(false_fail)


def expect_fit(test: FitTest, *, call: str, quantity: str, hint: str = "", instance: str = "") -> None:
    """Raise CheckFailed with the test's numbers and the cells that differ most when it did not
    pass. ``quantity`` names what was drawn ("the next token over 2000 calls")."""
    if not test.passed:
        _fail(call=call, hint=hint, instance=instance,
              got=f"draws whose distribution of {quantity} differs from the expected one:\n{test.table()}",
              expected=f"draws from the expected distribution: {test.summary()}")
