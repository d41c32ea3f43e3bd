"""P2's mutants: other shifts of the softmax parameters and other types keep full marks. Graded on
P2's tests."""
from autograder.problems.p2 import test_p2_gaussian_softmax as checks

from . import BASES, cases, source

FILE = "p2_gaussian_softmax.py"
CORRECT = """
import numpy as np

def softmax_parameters(pi, mu, sigma):
    pi, mu = np.asarray(pi, dtype=float), np.asarray(mu, dtype=float)
    W = mu / sigma**2
    b = np.log(pi) - np.sum(mu**2, axis=1) / (2 * sigma**2)
    return W, b
"""


def replace(old: str, new: str) -> str:
    assert CORRECT.count(old) == 1, old
    return CORRECT.replace(old, new)


def _hard_coded() -> str:
    table = {}
    for _, pi, mu, sigma in checks._instances(checks.UNIFORM_PUBLIC + checks.NONUNIFORM_PUBLIC):
        W, b = checks.reference.softmax_parameters(pi, mu, sigma)
        table[(tuple(pi.tolist()), sigma)] = (W.tolist(), b.tolist())
    return f"""
import numpy as np
TABLE = {table!r}
def softmax_parameters(pi, mu, sigma):
    W, b = TABLE.get((tuple(np.asarray(pi).tolist()), sigma), (np.zeros(np.shape(mu)), np.zeros(len(pi))))
    return np.array(W), np.array(b)
"""


B_LINE = "b = np.log(pi) - np.sum(mu**2, axis=1) / (2 * sigma**2)"
MUTANTS = {
    # the prior left out: right only when pi is uniform
    "no_log_prior": (replace(B_LINE, "b = -np.sum(mu**2, axis=1) / (2 * sigma**2)"), {"p2_nonuniform_public", "p2_random"}),
    # the norm term left out
    "no_norm_term": (replace(B_LINE, "b = np.log(pi)"), {"p2_uniform_public", "p2_nonuniform_public", "p2_random"}),
    # sigma instead of sigma squared in W (right only for sigma = 1)
    "w_over_sigma": (replace("W = mu / sigma**2", "W = mu / sigma"), {"p2_uniform_public", "p2_nonuniform_public", "p2_random"}),
    # "with a uniform prior the bias vanishes": b = 0 then, right otherwise
    "zero_bias_when_uniform": (replace("    return W, b", "    if np.allclose(pi, pi[0]):\n        b = np.zeros_like(b)\n    return W, b"),
                               {"p2_uniform_public"}),
    # log(pi + 1e-12) to "avoid log 0": off only for a rare class
    "smoothed_log_prior": (replace("np.log(pi)", "np.log(pi + 1e-12)"), {"p2_nonuniform_public"}),
    # b returned with shape (k, 1)
    "b_column": (replace("    return W, b", "    return W, b[:, None]"), {"p2_uniform_public", "p2_nonuniform_public", "p2_random"}),
    # a different shift for one class only is not a common shift
    "one_class_shifted": (replace("    return W, b", "    b = b.copy()\n    b[-1] += 0.5\n    return W, b"),
                          {"p2_uniform_public", "p2_nonuniform_public", "p2_random"}),
    # the public answers from a table
    "hard_coded": (_hard_coded(), {"p2_random"}),
    # right numbers as nested Python lists: refused (the API returns arrays), with what to do
    "nested_lists": ("""
import math

def softmax_parameters(pi, mu, sigma):
    W = [[float(m) / sigma**2 for m in row] for row in mu]
    b = [math.log(float(p)) - sum(float(m)**2 for m in row) / (2 * sigma**2) for p, row in zip(pi, mu)]
    return W, b
""", {"p2_uniform_public", "p2_nonuniform_public", "p2_random"}),
    # + ‖μ_y‖²/(2σ²): the square expanded with the wrong sign
    "norm_term_sign": (replace(B_LINE, "b = np.log(pi) + np.sum(mu**2, axis=1) / (2 * sigma**2)"),
                       {"p2_uniform_public", "p2_nonuniform_public", "p2_random"}),
}

# What the feedback must say for a mutant whose answer matches a known mistake: {mutant: {test id: words}}.
NAMES_THE_MISTAKE = {
    "no_log_prior": {"p2_nonuniform_public": "your b leaves out log π_y", "p2_random": "your b leaves out log π_y"},
    "no_norm_term": {"p2_uniform_public": "leaves out −‖μ_y‖²/(2σ²)", "p2_random": "leaves out −‖μ_y‖²/(2σ²)"},
    "w_over_sigma": {"p2_uniform_public": "your W divides by σ, not σ²", "p2_random": "your W divides by σ, not σ²"},
    "zero_bias_when_uniform": {"p2_uniform_public": "leaves out −‖μ_y‖²/(2σ²)"},
    "smoothed_log_prior": {"p2_nonuniform_public": "off only for the rare class"},
    "norm_term_sign": {"p2_random": "adds ‖μ_y‖²/(2σ²) instead of subtracting it"},
}

RIGHT_BUT_DIFFERENT = {
    # class 0 as the reference class: w_y − w_0, b_y − b_0 (a common shift), returned as a list
    "reference_class_list": """
        import numpy as np
        def softmax_parameters(pi, mu, sigma):
            mu = np.asarray(mu, dtype=float)
            W = mu / sigma**2
            b = np.log(pi) - 0.5 * np.einsum("kn,kn->k", mu, mu) / sigma**2
            return [W - W[0], b - b[0]]
        """,
    # the full log density kept: −‖x − μ_y‖²/(2σ²) expands to a class-independent −‖x‖²/(2σ²) (dropped)
    # plus these terms, with log of the Gaussian normaliser and an arbitrary vector added to every w_y
    "normaliser_and_shift_torch": """
        import math
        import torch
        def softmax_parameters(pi, mu, sigma):
            mu = torch.as_tensor(mu, dtype=torch.float64)
            k, n = mu.shape
            c = torch.linspace(-3.0, 7.0, n, dtype=torch.float64)  # any vector, the same for every class
            W = mu / sigma**2 + c
            b = torch.log(torch.as_tensor(pi)) - (mu**2).sum(dim=1) / (2 * sigma**2) - 0.5 * n * math.log(2 * math.pi * sigma**2)
            return W, b.to(torch.float64)
        """,
    # the student-side reproduction of float32 false fails: torch.Tensor (float32) throughout; the
    # tolerance scales with log π_y and ‖μ_y‖²/(2σ²), not with the centred b (tiny when k = 2)
    "torch_float32": """
        import torch
        def softmax_parameters(pi, mu, sigma):
            pi, mu = torch.Tensor(pi), torch.Tensor(mu)
            W = mu / sigma**2
            b = torch.log(pi) - (mu**2).sum(dim=1) / (2 * sigma**2)
            return W, b
        """,
}


BASES[FILE] = source(CORRECT)

# More that the feedback must say.
FEEDBACK = {
    "no_log_prior": {"p2_nonuniform_public": [
        "4 of 4 answers wrong", "prior (0.2, 0.8)",
        "Hint: your b leaves out log π_y: that is only right when the prior is uniform",
        "any shift shared by all 2 rows is accepted"]},
    "b_column": {"p2_uniform_public": ["b with shape (2, 1)", "expected b with shape (2,)"]},
    "nested_lists": {test: ["a list", "not a list", "return np.asarray(W, dtype=float) or a tensor"]
                     for test in ("p2_uniform_public", "p2_nonuniform_public", "p2_random")},
    "one_class_shifted": {"p2_uniform_public": ["2 of 2 entries off", "2 of 2 rows are off after centring",
                                                "tolerance", "1e-09 + 4e-06·S, S = max_y"]},
}

CASES = cases("p2", files_of=lambda text: {FILE: source(text)}, mutants=MUTANTS, right=RIGHT_BUT_DIFFERENT,
              parts=("p2",), names_the_mistake=NAMES_THE_MISTAKE, feedback=FEEDBACK)
