"""P4 checks: forward and reverse autoregressive Gaussians (part p4).

- same_hypothesis_space() must be False, as a bool (a numpy bool or 0-d bool tensor is fine).
- counterexample() must be a forward model for n = 2: mu1 and sigma1 > 0 real numbers, mu2 and
  sigma2 deterministic callables float -> real with sigma2 > 0. The form check evaluates them at
  x1 points drawn from the run's seed, near mu1 and up to 12 sigma1 away, each twice.
- Its x_2-marginal must be non-Gaussian. The callables run in the child (harness
  ``p4_counterexample``), at x1 nodes the grader chooses; the grader turns the values into
  p_f(x_2) with marginal.py's quadrature (nodes on mu1 ± 8 sigma1, refined until
  jumps are resolved, up to 32001 nodes) and measures the total variation to the Gaussian with
  the same mean and variance. It passes when that TV, less the quadrature's error bound, exceeds
  P4_TV_THRESHOLD = 0.005: a Gaussian marginal (mu2 linear, sigma2 constant) gives TV < 1e-10
  and an error bound ≤ 1e-3, the handout's step example about 0.515.
- A nearly deterministic map (x2 = x1² + 0.001 noise, sigma2 down to 1e-6, smooth or with
  jumps) cannot be resolved by nodes alone: the grader then also judges x2 + tau·noise, with the
  smallest tau that resolves it on the finest nodes. Independent noise can only bring two
  distributions closer, and it keeps the moment-matched Gaussian Gaussian, so the smoothed TV
  is a lower bound on the true one (x1² + 0.001 noise: tau 0.0065, TV 0.45); a Gaussian marginal
  stays Gaussian. Only structure finer than tau (many narrow spikes) is lost.
- It also judges the unsmoothed marginal (and smaller taus) with the probability of the x1
  intervals left unresolved counted as error: an interval of probability w moves the marginal
  by at most w in total variation, so TV − unresolved is a lower bound too, tried when the
  smoothed TV does not pass. Many narrow steps (round(3 x1) with sigma2 0.1: 0.0015 unresolved, TV 0.57) pass so
  where the smoothing would take tau = 2 and erase the bumps; a Gaussian comb (unresolved ≈ 1)
  cannot.
"""
import numpy as np
import pytest

from autograder.compare import CheckFailed, as_real, expect_answer, feedback

MODULE = "p4_autoregressive"
CALL = "counterexample()"
FORM_HINT = ("return {'mu1': float, 'sigma1': float > 0, 'mu2': f, 'sigma2': g} where f and g take one Python float "
             "x1 and return one float, the same one every time, with g(x1) > 0 for every x1.")
# The principle, not a counterexample to copy: every test is visible to students.
MARGINAL_FIX = ("Make the x2-marginal a mixture that no single Gaussian matches: let mu2 (or sigma2) depend on x1 "
                "nonlinearly and strongly enough, compared with sigma2, that the x2-values of different x1 pile up in "
                "shapes one Gaussian cannot follow (separate bumps, a skew).")


@pytest.mark.graded("p4_same_space")
def test_same_hypothesis_space(student, outcome):
    call = "same_hypothesis_space()"
    expect_answer(student.call(MODULE, "same_hypothesis_space"), False, call=call,
                  hint="answer the question with a bool: do both model families cover the same distributions?",
                  why="for n = 2 the reverse model's x_2-marginal is always one Gaussian N(mu2', sigma2'^2), while the "
                      "forward model's is a mixture over x_1 that can be bimodal.")
    outcome.note("same_hypothesis_space() is False.")


def _malformed(answer) -> bool:
    """Whether the harness's answer lacks the structure it promises (only if student code tampered with it)."""
    if type(answer) is not dict or type(answer.get("type")) is not str or type(answer.get("keys")) is not list \
            or type(answer.get("mapping")) is not bool:
        return True
    names = ("mu1", "sigma1", "mu2", "sigma2")
    return answer["mapping"] and not all(type(answer.get(name)) is dict for name in names)


def _parameters(answer: dict) -> tuple[float, float]:
    """mu1 and sigma1 from the harness's answer, judged like any returned real."""
    if _malformed(answer):
        raise CheckFailed(feedback(call=CALL, got="something the grader could not read (was the grader's code in "
                                   "your process changed?)", expected="a dict with keys mu1, sigma1, mu2, sigma2"))
    if not answer["mapping"]:
        raise CheckFailed(feedback(call=CALL, got=answer["type"], expected="a dict with keys mu1, sigma1, mu2, sigma2",
                                   hint=FORM_HINT))
    missing = [name for name in ("mu1", "sigma1", "mu2", "sigma2") if answer[name].get("missing")]
    if missing:
        raise CheckFailed(feedback(call=CALL, got=f"a dict with keys {answer['keys']}",
                                   expected=f"also the key(s) {', '.join(missing)}", hint=FORM_HINT))
    values = {}
    for name in ("mu1", "sigma1"):
        entry = answer[name]
        if "unsupported" in entry:
            raise CheckFailed(feedback(call=f"{CALL}['{name}']", got=f"{entry['unsupported']['got']}, "
                                       f"{entry['unsupported']['type']}", expected="a real number", hint=FORM_HINT))
        values[name] = as_real(entry["value"], call=f"{CALL}['{name}']", hint=FORM_HINT)
    if not values["sigma1"] > 0:
        raise CheckFailed(feedback(call=f"{CALL}['sigma1']", got=repr(values["sigma1"]), expected="a standard deviation > 0",
                                   hint=FORM_HINT))
    return values["mu1"], values["sigma1"]


def _callable_values(answer: dict, name: str, points: np.ndarray) -> np.ndarray:
    """mu2 or sigma2 at ``points`` from the harness's answer: finite reals (sigma2 > 0), one per point."""
    entry = answer[name]
    where = f"{CALL}['{name}']"
    if "not_callable" in entry:
        raise CheckFailed(feedback(call=CALL, got=f"{name} = {entry['not_callable']}",
                                   expected=f"{name} a function of x1", hint=FORM_HINT))
    if "bad" in entry:
        bad = entry["bad"]
        raise CheckFailed(feedback(call=f"{where}({bad['x1']!r})", got=f"{bad['got']}, {bad['type']}",
                                   expected="a real number (a Python float, a numpy scalar or a 0-d tensor)", hint=FORM_HINT))
    values = entry.get("values")
    if type(values) is not np.ndarray or values.shape != points.shape or values.dtype != np.float64:
        raise CheckFailed(feedback(call=where, got="a malformed list of values", expected=f"{points.size} numbers",
                                   hint=FORM_HINT))
    positive = name == "sigma2"
    bad = ~np.isfinite(values) | ((values <= 0.0) if positive else False)
    if bad.any():
        first = int(np.argmax(bad))
        raise CheckFailed(feedback(
            call=f"{where}({float(points[first])!r})", got=repr(float(values[first])),
            expected="a standard deviation: a finite number > 0" if positive else "a finite number",
            hint=f"{name} must give {'a finite number > 0' if positive else 'a finite number'} for every real x1 "
                 f"({int(bad.sum())} of the {points.size} points asked did not). " + FORM_HINT))
    return values


def evaluate(student, points: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """counterexample()'s answer, and its mu2 and sigma2 at ``points``, judged."""
    answer = student.harness("p4_counterexample", x1=np.asarray(points, dtype=np.float64))
    _parameters(answer)
    return answer, _callable_values(answer, "mu2", points), _callable_values(answer, "sigma2", points)


@pytest.mark.graded("p4_counterexample_form")
def test_counterexample_form(student, rng, outcome):
    answer = student.harness("p4_counterexample", x1=np.empty(0))
    mu1, sigma1 = _parameters(answer)
    # Where x1 has its mass, and far out (up to 12 sigma1, beyond the marginal's quadrature nodes).
    points = np.concatenate([mu1 + sigma1 * rng.normal(size=40), mu1 + sigma1 * rng.uniform(-12.0, 12.0, size=20),
                             mu1 + sigma1 * np.array([-12.0, -1.0, 0.0, 1.0, 12.0])])
    points = np.round(points, 6)  # short numbers in feedback
    twice = np.concatenate([points, points[::-1]])
    _, means, sds = evaluate(student, twice)
    for name, values in (("mu2", means), ("sigma2", sds)):
        first, again = values[: points.size], values[points.size:][::-1]
        differ = first != again
        if differ.any():
            index = int(np.argmax(differ))
            raise CheckFailed(feedback(
                call=f"{CALL}['{name}']({float(points[index])!r})",
                got=f"{float(first[index])!r} once and {float(again[index])!r} the next time",
                expected="the same value every time it is called with the same x1",
                hint=f"{name} must be a deterministic function of x1 (no random numbers, no state kept between calls). "
                     + FORM_HINT))
    outcome.note(f"mu1 = {mu1:.6g}, sigma1 = {sigma1:.6g}; mu2 and sigma2 are deterministic real functions with "
                 f"sigma2 > 0 at all {points.size} points tried (each called twice).")


def marginal_hint(mixture, gap, threshold: float) -> str:
    """Why a marginal came out Gaussian (or too close to one), from mu2 and sigma2 at the nodes."""
    x1, weights, means = mixture.x1, mixture.weights, mixture.means
    raw_sds = np.sqrt(np.maximum(mixture.sds**2 - mixture.smoothing**2, 0.0))
    scale = float(np.sqrt(gap.variance)) or 1.0
    centred = x1 - weights @ x1
    slope = float(weights @ (centred * (means - weights @ means)) / (weights @ centred**2))
    intercept = float(weights @ means - slope * (weights @ x1))
    residual = float(np.sqrt(weights @ (means - slope * x1 - intercept) ** 2))
    sd_mean = float(weights @ raw_sds)
    constant_sd = float(np.sqrt(weights @ (raw_sds - sd_mean) ** 2)) <= 1e-6 * sd_mean
    if residual <= 1e-6 * scale and constant_sd:
        if abs(slope) * float(np.sqrt(weights @ centred**2)) <= 1e-9 * scale:
            return (f"your mu2 is constant ({intercept:.4g}) and sigma2 too ({sd_mean:.4g}): x2 = mu2 + sigma2·noise does "
                    "not depend on x1 at all and is Gaussian. " + MARGINAL_FIX)
        line = f"{slope:.4g}·x1 {'−' if intercept < 0 else '+'} {abs(intercept):.4g}"
        return (f"your mu2 is linear in x1 (about {line}) and sigma2 constant ({sd_mean:.4g}): "
                "x2 = a·x1 + b + sigma2·noise is a sum of independent Gaussians, hence Gaussian. " + MARGINAL_FIX)
    unresolved = ""
    if mixture.alternatives:  # the finest nodes left more than the tolerance unresolved: say so, and what was done
        unsmoothed = [candidate.unresolved_mass for candidate in (mixture, *mixture.alternatives) if candidate.smoothing == 0]
        unresolved = (f" Where sigma2 is small, your mu2 or sigma2 change (jump, or climb steeply) faster than the "
                      f"grader's {gap.x1_nodes} x1 nodes can resolve: x1 falls between nodes it could not resolve with "
                      f"probability {unsmoothed[0]:.2g}. The grader counts that probability as numerical error, and also "
                      f"judges x2 + noise of sd {mixture.smoothing:.3g}, which resolves it (added noise can only lower the "
                      "distance, so a clear counterexample still passes); the best of these is reported. Structure finer "
                      "than that noise, such as many narrow spikes, does not count.")
    return ("mu2 and sigma2 are not linear and constant, but the x2-marginal they give is still within total variation "
            f"{gap.tv:.3g} of a Gaussian: its departure is too small to certify (the pass mark is "
            f"{threshold:g}).{unresolved} " + MARGINAL_FIX)


@pytest.mark.graded("p4_counterexample_marginal")
def test_counterexample_marginal_is_not_gaussian(student, outcome):
    from autograder.problems.p4 import marginal  # SciPy: imported only when this check runs

    answer = student.harness("p4_counterexample", x1=np.empty(0))
    mu1, sigma1 = _parameters(answer)
    def batch(x1):  # nodes in, (mu2, sigma2) out: one round trip to the child per refinement
        _, means, sds = evaluate(student, x1)
        return means, sds

    try:
        mixture = marginal.p4_mixture(mu1, sigma1, evaluate=batch)
    except ValueError as error:  # bad values were already reported by evaluate(); mu1, sigma1 by _parameters()
        raise CheckFailed(feedback(call=CALL, got=f"a model whose x2-marginal cannot be computed: {error}",
                                   expected="finite mu1, sigma1 > 0 and mu2, sigma2 that give finite values",
                                   hint=FORM_HINT)) from None
    gap = marginal.p4_gap_of_mixture(mixture)
    smoothed = f"; judged on x2 + N(0, {gap.smoothing:.3g}²) noise, a lower bound" if gap.smoothing > 0 else ""
    described = (f"p_f(x2) has mean {gap.mean:.4g}, variance {gap.variance:.4g} and {gap.modes} mode(s); its total "
                 f"variation distance to N({gap.mean:.4g}, {gap.variance:.4g}) is {gap.tv:.4g} (numerical error ≤ "
                 f"{gap.error_bound:.2g}, {gap.x1_nodes} x1 nodes{smoothed})")
    if not gap.certified_tv > marginal.P4_TV_THRESHOLD:
        raise CheckFailed(feedback(
            call=CALL, instance=f"the model mu1 = {mu1:.6g}, sigma1 = {sigma1:.6g}",
            got=f"a model whose x2-marginal is Gaussian, or too close to one to tell: {described}",
            expected=f"a marginal at least {marginal.P4_TV_THRESHOLD} in total variation (after the error) from "
                     f"the Gaussian with its mean and variance; no reverse model can produce such a marginal",
            hint=marginal_hint(mixture, gap, marginal.P4_TV_THRESHOLD)))
    outcome.note(f"Not Gaussian: {described} > {marginal.P4_TV_THRESHOLD}.")
