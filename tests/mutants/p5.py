"""P5's mutants: wrong averages, one draw reused, randomness not from the rng, wrong answers, and
a cheat that reads the model's numbers out of the callables it is handed (it gains nothing);
other ways to draw z, log-sum-exp and other return types keep full marks.

The statistical checks fail a correct estimator with probability ≤ 1e-6 each, so the
right-but-different cases cannot flake in practice; every wrong one is off by many times its
check's pass band (see autograder/problems/p5/test_p5_monte_carlo.py). A mutant of estimate_marginal
alone ("a_…") is graded on p5a, which is all that calls it; one of log_estimate_marginal or
log_estimator_is_unbiased alone ("b_…") on p5b; the others on both."""
from autograder.problems.p5 import test_p5_monte_carlo as checks

from . import BASES, cases, source

FILE = "p5_monte_carlo.py"
A_STATS = {"p5a_public", "p5a_random"}
B_STATS = {"p5b_public", "p5b_random"}

CORRECT = """
import numpy as np

def estimate_marginal(x, k, sample_prior, likelihood, rng):
    z = sample_prior(k, rng)
    return float(np.mean(likelihood(x, z)))

def log_estimate_marginal(x, k, sample_prior, likelihood, rng):
    z = sample_prior(k, rng)
    return float(np.log(np.mean(likelihood(x, z))))

def log_estimator_is_unbiased():
    return False
"""


def replace(old: str, new: str) -> str:
    assert CORRECT.count(old) == 1, old
    return CORRECT.replace(old, new)


A_LINE = "    return float(np.mean(likelihood(x, z)))"
B_LINE = "    return float(np.log(np.mean(likelihood(x, z))))"
A_CELLS = sorted({(x, k) for _, _, x, k in checks.P5A_PUBLIC})
B_CELLS = sorted({(x, k) for _, _, x, k in checks.P5B_PUBLIC})

MUTANTS = {
    # the sum of the k likelihoods: k times too large (k = 1 is right, the other cells are not), and k² times the variance
    "a_sum": (replace(A_LINE, "    return float(np.sum(likelihood(x, z)))"), A_STATS | {"p5a_variance"}),
    # sum / (k − 1): infinite for k = 1, k/(k − 1) too large otherwise
    "a_k_minus_one": (replace(A_LINE, "    with np.errstate(divide='ignore'):\n        return float(np.sum(likelihood(x, z)) / np.float64(k - 1))"),
                      A_STATS | {"p5a_variance"}),
    # sum / (k − 1) for k > 1 only: the mean is k/(k − 1) times p(x)
    "a_k_minus_one_when_possible": (replace(A_LINE, "    return float(np.sum(likelihood(x, z)) / max(k - 1, 1))"),
                                    A_STATS | {"p5a_variance"}),
    # right on the random models, wrong (the sum) on the public cells only
    "a_wrong_on_public_cells": (replace(A_LINE, f"    if (x, k) in {A_CELLS!r}:\n        return float(np.sum(likelihood(x, z)) + 0.1)\n{A_LINE}"),
                                {"p5a_public", "p5a_variance"}),
    # right on the public cells only (as if tuned to them), the sum elsewhere
    "a_right_on_public_cells_only": (replace(A_LINE, f"    if (x, k) not in {A_CELLS!r}:\n        return float(np.sum(likelihood(x, z)))\n{A_LINE}"),
                                     {"p5a_random", "p5a_variance"}),
    # one z drawn and used for all k terms: unbiased, but k times the variance of k draws
    "a_one_draw_reused": (replace(A_LINE, "    return float(np.mean(likelihood(x, np.repeat(sample_prior(1, rng), k))))"),
                          {"p5a_variance"}),
    # unbiased, but from a Generator of its own: not reproducible from the rng passed in
    "a_own_generator": (replace("def estimate_marginal(x, k, sample_prior, likelihood, rng):\n    z = sample_prior(k, rng)",
                                "def estimate_marginal(x, k, sample_prior, likelihood, rng):\n    z = sample_prior(k, np.random.default_rng())"),
                        {"p5a_rng"}),
    # a fixed seed of its own: every run returns the same number, which is one draw, not p(x)
    "a_fixed_seed": (replace("def estimate_marginal(x, k, sample_prior, likelihood, rng):\n    z = sample_prior(k, rng)",
                             "def estimate_marginal(x, k, sample_prior, likelihood, rng):\n    z = sample_prior(k, np.random.default_rng(0))"),
                     A_STATS | {"p5a_variance", "p5a_rng"}),
    # the average of the logs: its bias is the k = 1 bias for every k
    "b_mean_of_logs": (replace(B_LINE, "    return float(np.mean(np.log(likelihood(x, z))))"), B_STATS),
    # log of the sum: off by log k
    "b_log_of_sum": (replace(B_LINE, "    return float(np.log(np.sum(likelihood(x, z))))"), B_STATS),
    # 2k draws: the bias of log A with 2k draws, about half the right one
    "b_twice_the_draws": (replace(B_LINE, "    z = np.concatenate([z, sample_prior(k, rng)])\n" + B_LINE), B_STATS),
    "b_wrong_on_public_cells": (replace(B_LINE, f"    if (x, k) in {B_CELLS!r}:\n        return float(np.log(np.sum(likelihood(x, z))))\n{B_LINE}"),
                                {"p5b_public"}),
    "b_right_on_public_cells_only": (replace(B_LINE, f"    if (x, k) not in {B_CELLS!r}:\n        return float(np.log(np.sum(likelihood(x, z))))\n{B_LINE}"),
                                     {"p5b_random"}),
    "b_global_numpy_random": (replace("def log_estimate_marginal(x, k, sample_prior, likelihood, rng):\n    z = sample_prior(k, rng)",
                                      "def log_estimate_marginal(x, k, sample_prior, likelihood, rng):\n    z = sample_prior(k, np.random.default_rng(np.random.randint(2**31)))"),
                              {"p5b_rng"}),
    # one z drawn and used for all k terms: the k = 1 bias for every k, and log p(x|z)'s full spread
    "b_one_draw_reused": (replace(B_LINE, "    return float(np.log(np.mean(likelihood(x, np.repeat(z[:1], k)))))"), B_STATS),
    # reads the model's parameters out of what it is handed and returns the closed form: gains nothing
    "reads_the_model_and_returns_the_closed_form": ("""
import math
import numpy as np

def _parameters(sample_prior, likelihood):
    owner = getattr(sample_prior, "__self__", None)  # a bound method would give the model away
    if owner is not None:
        return owner.s, owner.t
    found = {}
    for function in (sample_prior, likelihood):
        found.update({**(function.__kwdefaults__ or {}), **dict(zip(function.__code__.co_freevars,
                                                                 (c.cell_contents for c in function.__closure__ or ())))})
    return found["scale"], math.sqrt(0.5 / found["inverse_two_variance"])

def estimate_marginal(x, k, sample_prior, likelihood, rng):
    s, t = _parameters(sample_prior, likelihood)
    return math.exp(-x**2 / (2 * (s**2 + t**2))) / math.sqrt(2 * math.pi * (s**2 + t**2))

def log_estimate_marginal(x, k, sample_prior, likelihood, rng):
    return math.log(estimate_marginal(x, k, sample_prior, likelihood, rng))

def log_estimator_is_unbiased():
    return False
""", {"p5a_variance", "p5a_rng", "p5b_public", "p5b_random", "p5b_rng"}),
    "b_says_unbiased": (replace("    return False", "    return True"), {"p5b_answer"}),
    "b_answer_as_text": (replace("    return False", "    return 'no'"), {"p5b_answer"}),
}

# What the feedback must say for a mutant whose answer matches a known mistake: {mutant: {test id: words}}.
NAMES_THE_MISTAKE = {
    "a_sum": {"p5a_public": "you summed the likelihoods", "p5a_variance": "Var[A] = Var_z[p(x|z)] / k"},
    "a_k_minus_one": {"p5a_public": "k − 1 when k = 1?"},
    "a_k_minus_one_when_possible": {"p5a_public": "you divided by k − 1", "p5a_random": "you divided by k − 1"},
    "a_one_draw_reused": {"p5a_variance": "one draw reused for all k terms"},
    "a_fixed_seed": {"p5a_variance": "do not vary from run to run"},
    "b_mean_of_logs": {"p5b_public": "not the average of the logs"},
    "b_one_draw_reused": {"p5b_public": "one draw reused for all k terms", "p5b_random": "one draw reused"},
    "b_log_of_sum": {"p5b_public": "the log of the sum of the likelihoods"},
    "b_twice_the_draws": {"p5b_public": "more than k draws"},
    "reads_the_model_and_returns_the_closed_form": {"p5a_variance": "do not vary from run to run"},
}

RIGHT_BUT_DIFFERENT = {
    # one prior draw at a time, k calls; numpy scalars and a numpy bool returned
    "one_draw_at_a_time": """
        import math
        import numpy as np
        def _average(x, k, sample_prior, likelihood, rng):
            total = 0.0
            for _ in range(k):
                z = sample_prior(1, rng)
                total += float(np.squeeze(likelihood(x, z)))
            return total / k
        def estimate_marginal(x, k, sample_prior, likelihood, rng):
            return np.float64(_average(x, k, sample_prior, likelihood, rng))
        def log_estimate_marginal(x, k, sample_prior, likelihood, rng):
            return np.float64(math.log(_average(x, k, sample_prior, likelihood, rng)))
        def log_estimator_is_unbiased():
            return np.bool_(False)
        """,
    # 2k draws, every other one kept (still k iid prior draws); log A by log-sum-exp; 0-d arrays
    "every_other_draw_logsumexp": """
        import numpy as np
        def _draws(k, sample_prior, rng):
            return np.asarray(sample_prior(2 * k, rng))[::2]
        def estimate_marginal(x, k, sample_prior, likelihood, rng):
            return np.asarray(np.average(likelihood(x, _draws(k, sample_prior, rng))))
        def log_estimate_marginal(x, k, sample_prior, likelihood, rng):
            log_terms = np.log(likelihood(x, _draws(k, sample_prior, rng)))
            top = np.max(log_terms)
            return np.asarray(top + np.log(np.sum(np.exp(log_terms - top))) - np.log(k))
        def log_estimator_is_unbiased():
            return 1 == 2
        """,
}


BASES[FILE] = source(CORRECT)

# More that the feedback must say: the instance, the test and its band, a hint.
FEEDBACK = {
    "a_sum": {"p5a_public": ["On the model z ~ N(0, 1.5²), x | z ~ N(z, 0.5²) with x = 0.8, k = 4",
                             "Bernstein's inequality", "probability ≤", "Hint: the mean is about k = 4 times p(x)"]},
    "b_mean_of_logs": {"p5b_public": ["log A's bias for k = 4", "two-sample normal approximation",
                                      "Hint: your bias does not shrink with k"]},
    "a_k_minus_one": {"p5a_public": ["returned inf", "expected a finite number"]},
    "a_own_generator": {"p5a_rng": ["the same values both times", "sample_prior(k, rng)"]},
    "b_answer_as_text": {"p5b_answer": "returned 'no', a str"},
}


def parts(name: str) -> tuple[str, ...]:
    return ("p5a",) if name.startswith("a_") else ("p5b",) if name.startswith("b_") else ("p5a", "p5b")


CASES = cases("p5", files_of=lambda text: {FILE: source(text)}, mutants=MUTANTS, right=RIGHT_BUT_DIFFERENT,
              parts=parts, names_the_mistake=NAMES_THE_MISTAKE, feedback=FEEDBACK)
