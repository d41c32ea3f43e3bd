"""P5 checks: Monte Carlo estimates of p(x) and the bias of their log (parts p5a, p5b).

The student's estimator runs many times inside the child (harness ``p5_estimates``) on the
Gaussian latent model z ~ N(0, s²), x | z ~ N(z, t²), whose p(x) = N(x | 0, s² + t²) is known in
closed form (model.py here; SymPy-checked in reference/closed_forms.py); the child builds sample_prior and likelihood from s and
t and passes one ``np.random.default_rng(seed)`` to every run. Only the values come back.

Statistical tests (autograder/compare.py), each check's false-fail probability ≤ 1e-6 in all
(split evenly over its cells, Bonferroni):
- p5a: the mean of RUNS estimates A against p(x) with Bernstein's inequality, using a correct
  A's known standard deviation sqrt(Var_z[p(x|z)] / k) and its range [0, 1/(t√(2π))]: exact,
  no normal approximation. On the public cells the pass band is 0.0053, 0.0057, 0.0012 (2.4 %,
  2.6 %, 0.75 % of p(x)), and a bias of 0.0082, 0.0088, 0.0018 is caught 99.9 % of the time (the
  feedback states these numbers for every cell).
- p5a_variance: an estimator can be unbiased and still not the one asked for (one z drawn and
  reused for all k terms: E[A] = p(x), Var[A] = Var_z[p(x|z)], k times too much). The sample
  variance of RUNS estimates is tested against Var_z[p(x|z)] / k (statistical.variance_test:
  Bernstein's inequality for the squared deviations, whose spread comes from A's exact fourth
  central moment, and for the mean; exact, no normal approximation), on the public cells with
  k > 1 and one random cell. The band is a few percent of the variance; one draw reused (a
  factor k ≥ 4) or 2k draws (a half) are far outside it.
- p5b: the mean of RUNS values of log A against the mean of REFERENCE_RUNS values of log A that
  the grader draws itself, by a two-sample normal approximation aimed at a tenth of each cell's
  share of 1e-6 (5.57 standard errors for the 4 public cells, 5.45 for the 2 random ones). The
  tenfold margin covers the approximation: log A is skewed (for k = 1 a scaled noncentral χ²₁,
  skewness ≤ 2√2, less for larger k), and for means of 20000 draws the Edgeworth term moves one
  tail at 5.5 standard errors by at most a factor of about 1.6 and the other the opposite way,
  leaving the two-sided probability nearly unchanged. The student's bias must be the bias of log A for
  that k, which is negative and shrinks like 1/k. On the public model (s = t = x = 1, log A's
  bias −0.40, −0.054, −0.012 for k = 1, 4, 16) the pass band is about 0.05, 0.015, 0.0065, and a
  difference of 0.08, 0.023, 0.010 is caught 99.9 % of the time (for a correct estimator's spread;
  a wrong one's own spread enters the standard error).
- p5a_rng, p5b_rng (deterministic): the same seed gives the same values, another seed other
  values, so all randomness comes from the rng passed in.
"""
import math

import numpy as np
import pytest

from autograder.compare import CheckFailed, expect_answer, feedback
from autograder.statistical import FALSE_FAIL, expect_mean, mean_test, two_sample_mean_test, variance_test

MODULE = "p5_monte_carlo"
RUNS = 20_000  # estimator calls per cell: about 0.15 s for a vectorised estimator
REFERENCE_RUNS = 200_000  # log A draws the grader makes per p5b cell (vectorised, in this process)

# (s, t, x, k): prior sd, likelihood sd, observed x, number of draws. s ≠ 1 somewhere, so drawing z
# from N(0, 1) instead of sample_prior shows; k = 1 makes A a single likelihood value.
P5A_PUBLIC = [(1.0, 1.0, 1.0, 1), (1.5, 0.5, 0.8, 4), (0.7, 1.2, -1.5, 10)]
P5B_PUBLIC = [(1.0, 1.0, 1.0, 1), (1.0, 1.0, 1.0, 4), (1.0, 1.0, 1.0, 16), (1.5, 0.5, 0.8, 2)]


def random_model(rng) -> tuple[float, float, float]:
    """s in [0.6, 1.8], t in [0.4, 1.2], x within 1.5 sd of p(x)'s mean 0."""
    s, t = float(rng.uniform(0.6, 1.8)), float(rng.uniform(0.4, 1.2))
    x = float(np.round(rng.uniform(-1.5, 1.5) * math.sqrt(s**2 + t**2), 4))
    return round(s, 4), round(t, 4), x


def _model(s, t):
    from autograder.problems.p5.model import p5_gaussian_latent_model
    return p5_gaussian_latent_model(s, t)


def _describe(s, t, x, k) -> str:
    return f"the model z ~ N(0, {s:g}²), x | z ~ N(z, {t:g}²) with x = {x:g}, k = {k}"


def run_estimator(student, function: str, s, t, x, k, *, runs: int, rng_seed: int) -> np.ndarray:
    """``runs`` values of the student's estimator on one model, judged: real numbers, finite."""
    call = f"{function}(x={x!r}, k={k!r}, sample_prior, likelihood, rng)"
    answer = student.harness("p5_estimates", function=function, s=s, t=t, x=x, k=k, runs=runs, rng_seed=rng_seed)
    if type(answer) is not dict:
        answer = {}  # only if student code tampered with the harness: reported as malformed below
    if type(answer.get("bad")) is dict:
        bad = answer["bad"]
        raise CheckFailed(feedback(call=call, instance=f"{_describe(s, t, x, k)}, run {bad['run'] + 1}",
                                   got=f"{bad['got']}, {bad['type']}",
                                   expected="a real number (a Python float, a numpy scalar or a 0-d tensor)",
                                   hint="return one number per call, e.g. float(...)."))
    values = answer.get("values")
    if type(values) is not np.ndarray or values.shape != (runs,) or values.dtype != np.float64:
        raise CheckFailed(feedback(call=call, got="a malformed list of values", expected=f"{runs} numbers"))
    bad = ~np.isfinite(values)
    if bad.any():
        run = int(np.argmax(bad))
        raise CheckFailed(feedback(call=call, instance=f"{_describe(s, t, x, k)}, run {run + 1} of {runs}",
                                   got=repr(float(values[run])), expected="a finite number",
                                   hint="check for a division by zero (k − 1 when k = 1?) or the log of 0."))
    return values


# -- p5a: A is unbiased, with the variance of k independent draws ------------------------------
A_HINT = ("A is the plain average of likelihood(x, z) over z = sample_prior(k, rng): E[A] = E_z[p(x|z)] = p(x). "
          "Average the likelihood values themselves (not their logs, median or maximum), over exactly k prior draws.")


def _p5a_hint(test, p: float, k: int) -> str:
    """Which known mistake the mean matches (within the test's band, scaled), else the generic hint."""
    for factor, named in ((k, f"the mean is about k = {k} times p(x): you summed the likelihoods; divide the sum by k."),
                          (k / (k - 1) if k > 1 else None,
                           f"the mean is about k/(k − 1) = {k / max(k - 1, 1):.3g} times p(x): you divided by k − 1; "
                           "divide by k.")):
        if factor is not None and k > 1 and abs(test.observed - factor * p) <= factor * test.threshold:
            return f"{named} {A_HINT}"
    return A_HINT


def check_unbiased(student, rng, cells, outcome) -> None:
    notes = []
    for s, t, x, k in cells:
        model = _model(s, t)
        values = run_estimator(student, "estimate_marginal", s, t, x, k, runs=RUNS, rng_seed=int(rng.integers(2**63)))
        p = model.marginal(x)
        # A correct A lies in [0, 1/(t√(2π))] with sd sqrt(Var_z[p(x|z)] / k).
        test = mean_test(values, p, sd=math.sqrt(model.likelihood_variance(x) / k), bound=1.0 / (t * math.sqrt(2 * math.pi)),
                         false_fail=FALSE_FAIL / len(cells))
        expect_mean(test, call=f"estimate_marginal(x={x!r}, k={k}, sample_prior, likelihood, rng)",
                    instance=f"{_describe(s, t, x, k)}, whose p(x) = {p:.6g}",
                    quantity=f"mean over {RUNS} runs", hint=_p5a_hint(test, p, k))
        notes.append(f"{_describe(s, t, x, k)}: mean {test.observed:.5g}, p(x) = {p:.5g} ({test.summary()})")
    outcome.note(f"Unbiased within the tests' bands (false-fail probability ≤ {FALSE_FAIL:g} for the "
                 f"{len(cells)} cells together):\n" + "\n".join(notes))


def _variance_test(model, x, k, values, false_fail):
    """The variance of the estimates against Var_z[p(x|z)]/k, the variance of an average of k iid draws."""
    p, top = model.marginal(x), 1.0 / (model.t * math.sqrt(2 * math.pi))  # a correct A lies in [0, top]
    return variance_test(values, mean=p, variance=model.estimator_variance(x, k), bound=max(p, top - p),
                         fourth_central_moment=model.estimator_fourth_central_moment(x, k), false_fail=false_fail)


def _variance_hint(model, x, k, values, false_fail) -> str:
    """Which known mistake the spread of the estimates matches, else the generic hint."""
    wanted = ("A averages likelihood(x, z_j) over k independent draws z = sample_prior(k, rng), so Var[A] = "
              "Var_z[p(x|z)] / k.")
    if float(np.var(values)) <= 1e-12 * model.estimator_variance(x, k):
        return ("your estimates do not vary from run to run: a fixed seed, a Generator of your own, or p(x) computed "
                "another way? " + wanted)
    for draws, named in ((1, f"your estimates vary as much as a single draw's p(x|z), k = {k} times too much: one draw "
                             "reused for all k terms? Draw z = sample_prior(k, rng) once, as k draws, and average "
                             "likelihood(x, z) over all of them."),
                         (2 * k, "your estimates vary half as much as k draws give: 2k draws?")):
        if _variance_test(model, x, draws, values, false_fail).passed:
            return f"{named} {wanted}"
    return wanted


def check_variance(student, rng, cells, outcome) -> None:
    notes = []
    for s, t, x, k in cells:
        model = _model(s, t)
        values = run_estimator(student, "estimate_marginal", s, t, x, k, runs=RUNS, rng_seed=int(rng.integers(2**63)))
        test = _variance_test(model, x, k, values, FALSE_FAIL / len(cells))
        if not test.passed:
            raise CheckFailed(feedback(
                call=f"estimate_marginal(x={x!r}, k={k}, sample_prior, likelihood, rng)",
                instance=f"{_describe(s, t, x, k)}, whose Var_z[p(x|z)] / k = {test.expected:.6g}",
                got=f"values whose variance over {RUNS} runs is {test.observed:.6g}: {test.difference_text()}",
                expected=f"{test.expected:.6g} {test.band_text()}",
                hint=_variance_hint(model, x, k, values, FALSE_FAIL / len(cells))))
        notes.append(f"{_describe(s, t, x, k)}: variance {test.observed:.5g}, Var_z[p(x|z)]/k = {test.expected:.5g} "
                     f"({test.summary()})")
    outcome.note(f"The estimates vary as an average of k independent draws does (false-fail probability ≤ "
                 f"{FALSE_FAIL:g} for the {len(cells)} cells together):\n" + "\n".join(notes))


@pytest.mark.graded("p5a_public")
def test_estimate_marginal_unbiased_public(student, rng, outcome):
    check_unbiased(student, rng, P5A_PUBLIC, outcome)


@pytest.mark.graded("p5a_random")
def test_estimate_marginal_unbiased_random(student, rng, outcome):
    s, t, x = random_model(rng)
    cells = [(s, t, x, int(rng.integers(3, 13))), (*random_model(rng), int(rng.integers(2, 7)))]
    check_unbiased(student, rng, cells, outcome)


@pytest.mark.graded("p5a_variance")
def test_estimate_marginal_variance(student, rng, outcome):
    cells = [cell for cell in P5A_PUBLIC if cell[3] > 1] + [(*random_model(rng), int(rng.integers(3, 13)))]
    check_variance(student, rng, cells, outcome)


# -- p5b: log A is biased downwards, by log A's bias --------------------------------------------
def reference_log_estimates(model, x: float, k: int, runs: int, rng) -> np.ndarray:
    """``runs`` draws of log A = log((1/k) Σ_j p(x | z_j)), z_j iid N(0, s²): the reference
    estimator (reference/submission/p5_monte_carlo.py), vectorised over runs."""
    values = np.empty(runs)
    for start in range(0, runs, 50_000):  # bounded memory: 50000 × k draws at a time
        stop = min(start + 50_000, runs)
        z = rng.normal(0.0, model.s, size=(stop - start, k))
        values[start:stop] = np.log(np.mean(model.likelihood(x, z), axis=1))
    return values


def _p5b_hint(student_bias: float, reference_bias: float, k: int, k1_bias: float, *, spread: float,
              single_draw_spread: float, threshold: float) -> str:
    """What a wrong log estimator most likely did: from its bias and, where two mistakes share a bias,
    from the variance of its values (spread) against that of log p(x|z) for one draw."""
    wanted = ("log A = log((1/k) Σ_j p(x | z_j)) for the same A as estimate_marginal, with exactly k draws "
              "z = sample_prior(k, rng); by Jensen E[log A] < log E[A] = log p(x), and the gap shrinks like 1/k.")
    if k > 1 and abs(student_bias - (reference_bias + math.log(k))) <= threshold:
        return ("your values are log A + log k: the log of the sum of the likelihoods, not of their average. "
                + wanted)
    if k > 1 and abs(student_bias - k1_bias) < abs(student_bias - reference_bias):
        if abs(math.log(spread / single_draw_spread)) < abs(math.log(spread * k / single_draw_spread)):
            return ("your bias does not shrink with k, and your values vary as much as log p(x|z) for a single draw: "
                    "one draw reused for all k terms? Draw z = sample_prior(k, rng) once, as k draws, and average "
                    "likelihood(x, z) over all of them before the log. " + wanted)
        return ("your bias does not shrink with k: it matches the average of log p(x|z) over the draws. Return the log "
                "of the average likelihood, not the average of the logs: " + wanted)
    if abs(student_bias) < abs(reference_bias):
        return ("your bias is smaller in size than log A's: more than k draws, or a bias correction? The question asks "
                "for " + wanted)
    return "your bias is larger in size than log A's: fewer than k draws, or another formula? Return " + wanted


def check_log_bias(student, rng, cells, outcome) -> None:
    rows = []
    for s, t, x, k in cells:
        model = _model(s, t)
        values = run_estimator(student, "log_estimate_marginal", s, t, x, k, runs=RUNS, rng_seed=int(rng.integers(2**63)))
        reference = reference_log_estimates(model, x, k, REFERENCE_RUNS, rng)
        log_p = math.log(model.marginal(x))
        test = two_sample_mean_test(values, reference, false_fail=FALSE_FAIL / len(cells))
        student_bias, reference_bias = test.observed - log_p, test.expected - log_p
        if not test.passed:
            raise CheckFailed(feedback(
                call=f"log_estimate_marginal(x={x!r}, k={k}, sample_prior, likelihood, rng)",
                instance=f"{_describe(s, t, x, k)}, whose log p(x) = {log_p:.6g}",
                got=f"values whose mean over {RUNS} runs is {test.observed:.6g}: a bias of {student_bias:+.4g}",
                expected=f"log A's bias for k = {k}, {reference_bias:+.4g} (the reference's, over {REFERENCE_RUNS} "
                         f"runs) {test.band_text()}; {test.difference_text()}",
                hint=_p5b_hint(student_bias, reference_bias, k, model.log_bias_k1(x), spread=float(np.var(values)),
                               single_draw_spread=model.log_likelihood_variance(x), threshold=test.threshold)))
        rows.append((s, t, x, k, student_bias, reference_bias, test))
    lines = [f"{_describe(s, t, x, k)}: bias {b:+.4g} (log A's: {r:+.4g}; {test.summary()})" for s, t, x, k, b, r, test in rows]
    outcome.note(f"The bias matches log A's, negative and shrinking with k (false-fail probability ≤ {FALSE_FAIL:g} "
                 f"for the {len(cells)} cells together):\n" + "\n".join(lines))


@pytest.mark.graded("p5b_public")
def test_log_estimate_bias_public(student, rng, outcome):
    check_log_bias(student, rng, P5B_PUBLIC, outcome)


@pytest.mark.graded("p5b_random")
def test_log_estimate_bias_random(student, rng, outcome):
    s, t, x = random_model(rng)
    check_log_bias(student, rng, [(s, t, x, 1), (s, t, x, int(rng.integers(3, 9)))], outcome)


@pytest.mark.graded("p5b_answer")
def test_log_estimator_is_not_unbiased(student, outcome):
    call = "log_estimator_is_unbiased()"
    expect_answer(student.call(MODULE, "log_estimator_is_unbiased"), False, call=call,
                  hint="answer with a bool: is E[log A] = log p(x)?",
                  why="log is strictly concave, so E[log A] < log E[A] = log p(x) (Jensen) unless A is constant: "
                      "log A underestimates log p(x) on average.")
    outcome.note("log_estimator_is_unbiased() is False.")


# -- both: all randomness from the rng passed in -------------------------------------------------
def check_uses_rng(student, function: str, rng, outcome) -> None:
    s, t, x, k = 1.3, 0.8, 0.5, 8
    seed, other = (int(v) for v in rng.integers(2**63, size=2))
    first = run_estimator(student, function, s, t, x, k, runs=3, rng_seed=seed)
    again = run_estimator(student, function, s, t, x, k, runs=3, rng_seed=seed)
    elsewhere = run_estimator(student, function, s, t, x, k, runs=3, rng_seed=other)
    call = f"{function}(x={x!r}, k={k}, sample_prior, likelihood, rng)"
    hint = ("draw the latents only through sample_prior(k, rng) with the rng you are given (no np.random.*, no new "
            "default_rng of your own): the grader must be able to reproduce every estimate from its seed.")
    if not np.array_equal(first, again):
        raise CheckFailed(feedback(call=call, instance=f"{_describe(s, t, x, k)}, three runs with rng = "
                                                       f"np.random.default_rng({seed}), twice",
                                   got=f"{first.tolist()} the first time and {again.tolist()} the second",
                                   expected="the same values both times", hint=hint))
    if np.array_equal(first, elsewhere):
        raise CheckFailed(feedback(call=call, instance=f"{_describe(s, t, x, k)}, three runs with default_rng({seed}) "
                                                       f"and three with default_rng({other})",
                                   got=f"{first.tolist()} for both seeds", expected="other values for another seed",
                                   hint=hint))
    outcome.note("The same seed gives the same estimates, another seed other ones.")


@pytest.mark.graded("p5a_rng")
def test_estimate_marginal_uses_rng(student, rng, outcome):
    check_uses_rng(student, "estimate_marginal", rng, outcome)


@pytest.mark.graded("p5b_rng")
def test_log_estimate_marginal_uses_rng(student, rng, outcome):
    check_uses_rng(student, "log_estimate_marginal", rng, outcome)
