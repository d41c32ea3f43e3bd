"""P4's mutants: Gaussian marginals (linear or constant mu2, also nearly deterministic), callables
that are not functions of x1, bad sigmas and shapes; other non-Gaussian marginals and other
accepted types keep full marks. Graded on P4's tests."""
from . import BASES, cases, source

FILE = "p4_autoregressive.py"
FORM_AND_MARGINAL = {"p4_counterexample_form", "p4_counterexample_marginal"}

CORRECT = """
def same_hypothesis_space():
    return False

def mu2(x1):
    return 0.0 if x1 <= 0 else 4.0

def sigma2(x1):
    return 0.5

def counterexample():
    return {"mu1": 0.0, "sigma1": 1.0, "mu2": mu2, "sigma2": sigma2}
"""


def replace(old: str, new: str) -> str:
    assert CORRECT.count(old) == 1, old
    return CORRECT.replace(old, new)


MU2 = "    return 0.0 if x1 <= 0 else 4.0"
SIGMA2 = "    return 0.5\n"
MUTANTS = {
    "same_space_true": (replace("    return False", "    return True"), {"p4_same_space"}),
    "same_space_int": (replace("    return False", "    return 0"), {"p4_same_space"}),
    "same_space_string": (replace("    return False", "    return 'False'"), {"p4_same_space"}),
    # x2 = 2 x1 + 1 + 0.5 noise is Gaussian
    "linear_mean": (replace(MU2, "    return 2.0 * x1 + 1.0"), {"p4_counterexample_marginal"}),
    # constant mean and sd: x2 is independent of x1, and Gaussian
    "constant_mean": (replace(MU2, "    return 3.0"), {"p4_counterexample_marginal"}),
    # a bimodal marginal, but mu2 is not a function: it changes from call to call
    "mu2_random_jitter": (replace(MU2, "    import random\n    return (0.0 if x1 <= 0 else 4.0) + random.gauss(0.0, 1e-3)"),
                          {"p4_counterexample_form"}),
    # sigma2 = 0 far from mu1 only: the marginal is fine, but sigma2 must be > 0 everywhere
    "sigma2_zero_far_out": (replace(SIGMA2, "    return 0.5 if abs(x1) < 10 else 0.0\n"), {"p4_counterexample_form"}),
    # sigma2 negative for x1 < 0
    "sigma2_negative": (replace(SIGMA2, "    return x1\n"), FORM_AND_MARGINAL),
    "sigma1_zero": (replace('"sigma1": 1.0', '"sigma1": 0.0'), FORM_AND_MARGINAL),
    "mu2_returns_list": (replace(MU2, "    return [0.0 if x1 <= 0 else 4.0]"), FORM_AND_MARGINAL),
    "mu2_nan_beyond_2": (replace(MU2, "    return float('nan') if x1 > 2 else 0.0 if x1 <= 0 else 4.0"), FORM_AND_MARGINAL),
    "missing_sigma2": (replace(', "sigma2": sigma2}', "}"), FORM_AND_MARGINAL),
    "mu2_not_callable": (replace('"mu2": mu2,', '"mu2": 4.0,'), FORM_AND_MARGINAL),
    "tuple_not_dict": (replace('return {"mu1": 0.0, "sigma1": 1.0, "mu2": mu2, "sigma2": sigma2}', "return (0.0, 1.0, mu2, sigma2)"),
                       FORM_AND_MARGINAL),
    # x2 = 1000 x1 + 1e-6 noise: far too steep for the nodes, and Gaussian all the same
    "linear_nearly_deterministic": (replace(MU2, "    return 1000.0 * x1 - 3.0").replace(SIGMA2, "    return 1e-6\n"),
                                    {"p4_counterexample_marginal"}),
    # x2 = ±x1 + 0.1 noise, the sign flipping on bands of width 1/3: Gaussian (x1 is symmetric), with
    # 48 jumps the finest nodes leave unresolved (probability 0.0009 at 32001 nodes)
    "sign_flipping_bands": (replace(MU2, "    import math\n    return x1 * (-1) ** math.floor(3 * abs(x1))").replace(
        SIGMA2, "    return 0.1\n"), {"p4_counterexample_marginal"}),
}

# What the feedback must say for a mutant whose answer matches a known mistake: {mutant: {test id: words}}.
NAMES_THE_MISTAKE = {
    "linear_mean": {"p4_counterexample_marginal": "your mu2 is linear in x1 (about 2·x1 + 1)"},
    "constant_mean": {"p4_counterexample_marginal": "your mu2 is constant (3)"},
    "linear_nearly_deterministic": {"p4_counterexample_marginal": "your mu2 is linear in x1 (about 1000·x1 − 3)"},
    "same_space_true": {"p4_same_space": "the reverse model's x_2-marginal is always one Gaussian"},
}

RIGHT_BUT_DIFFERENT = {
    # a scale mixture: one peak, heavy tails; torch scalars and a 0-d bool tensor
    "scale_mixture_torch": """
        import torch
        def same_hypothesis_space():
            return torch.tensor(False)
        def counterexample():
            return {"mu1": torch.tensor(0.5, dtype=torch.float64), "sigma1": torch.tensor(2.0),
                    "mu2": lambda x1: torch.tensor(1.0), "sigma2": lambda x1: torch.tensor(0.2 if x1 < 0.5 else 3.0)}
        """,
    # a smooth, skewed marginal (a chi-square-like x1²), numpy scalars
    "smooth_quadratic_numpy": """
        import numpy as np
        def same_hypothesis_space():
            return np.False_
        def counterexample():
            return {"mu1": np.float64(1.0), "sigma1": np.float64(0.7),
                    "mu2": lambda x1: np.square(np.float64(x1)), "sigma2": lambda x1: 0.3 + 0.1 * np.abs(np.float64(x1))}
        """,
    # three bumps from integer-valued steps; ints where reals are wanted; an OrderedDict with an extra key
    "three_steps_ints": """
        import collections
        import numpy as np
        class Forward:
            def mu2(self, x1):
                return np.int64(-5 if x1 < -1 else 0 if x1 < 1 else 5)
            def sigma2(self, x1):
                return 1
        def same_hypothesis_space():
            return bool(0)
        def counterexample():
            model = Forward()
            return collections.OrderedDict(mu1=0, sigma1=2, mu2=model.mu2, sigma2=model.sigma2, note="bumps at -5, 0, 5")
        """,
    # nearly deterministic and smooth: x2 = x1² + 0.001 noise (a χ²₁ shape), too steep for the nodes alone
    "nearly_deterministic_parabola": """
        def same_hypothesis_space():
            return False
        def counterexample():
            return {"mu1": 0.0, "sigma1": 1.0, "mu2": lambda x1: x1**2, "sigma2": lambda x1: 0.001}
        """,
    # smooth, with a jump, sigma2 = 1e-6 on one side and 1 on the other, at a large scale
    "jump_and_tiny_noise_at_scale": """
        import math
        def same_hypothesis_space():
            return False
        def counterexample():
            return {"mu1": 3.0, "sigma1": 2.0, "mu2": lambda x1: 1e3 * math.tanh(x1 - 3.0) + (500.0 if x1 > 4 else 0.0),
                    "sigma2": lambda x1: 1e-6 if x1 < 3 else 1.0}
        """,
    # Step functions whose jumps leave a little more than 1e-3 of x1's probability unresolved on the
    # finest nodes (half a node spacing each jump): narrow bumps at the integers, once judged only
    # on x2 + N(0, 2.01²), which erases them.
    "round_steps_narrow": """
        def same_hypothesis_space():
            return False
        def counterexample():
            return {"mu1": 0.0, "sigma1": 1.0, "mu2": lambda x1: float(round(3 * x1)), "sigma2": lambda x1: 0.1}
        """,
    "floor_steps_narrower": """
        import math
        def same_hypothesis_space():
            return False
        def counterexample():
            return {"mu1": 0.0, "sigma1": 1.0, "mu2": lambda x1: float(math.floor(3 * x1)), "sigma2": lambda x1: 0.05}
        """,
    "round_five_steps": """
        def same_hypothesis_space():
            return False
        def counterexample():
            return {"mu1": 0.0, "sigma1": 1.0, "mu2": lambda x1: float(round(5 * x1)), "sigma2": lambda x1: 0.1}
        """,
    # 1/x1 + noise: two humps and heavy tails; steep near x1 = 0 only (probability 0.025), which once
    # forced the smoothing to sd 668 over the whole marginal
    "reciprocal_heavy_tails": """
        def same_hypothesis_space():
            return False
        def counterexample():
            return {"mu1": 0.0, "sigma1": 1.0, "mu2": lambda x1: 1.0 / x1 if x1 != 0 else 0.0, "sigma2": lambda x1: 1.0}
        """,
}


BASES[FILE] = source(CORRECT)

# More that the feedback must say: the bad value and where, and the distance found.
FEEDBACK = {
    "linear_mean": {"p4_counterexample_marginal": [
        "x2-marginal is Gaussian, or too close to one to tell", "total variation distance",
        "Hint: your mu2 is linear in x1", "sigma2 constant (0.5)"]},
    "sigma2_negative": {test_id: ["counterexample()['sigma2'](-", "expected a standard deviation: a finite number > 0"]
                        for test_id in FORM_AND_MARGINAL},
    "mu2_nan_beyond_2": {"p4_counterexample_marginal": "counterexample()['mu2'](2."},
    "mu2_returns_list": {"p4_counterexample_form": ("returned [0.0], a list", "returned [4.0], a list")},
    "mu2_random_jitter": {"p4_counterexample_form": "the same value every time"},
    "same_space_string": {"p4_same_space": "returned 'False', a str"},
    "same_space_int": {"p4_same_space": "return the bool itself, not an int"},
    "tuple_not_dict": {"p4_counterexample_form": "counterexample() returned a tuple\nexpected a dict"},
    "sign_flipping_bands": {"p4_counterexample_marginal": [
        "x2-marginal is Gaussian, or too close to one to tell", "faster than the grader's 32001 x1 nodes can resolve",
        "counts that probability as numerical error"]},
}

CASES = cases("p4", files_of=lambda text: {FILE: source(text)}, mutants=MUTANTS, right=RIGHT_BUT_DIFFERENT,
              parts=("p4",), names_the_mistake=NAMES_THE_MISTAKE, feedback=FEEDBACK)
