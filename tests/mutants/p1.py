"""P1's mutants: each function written on its own (none calls another), so a mutant of one
cannot touch the others. Graded on P1's tests."""
from autograder.problems.p1 import test_p1_mle_kl as checks

from . import BASES, cases, source

FILE = "p1_mle_kl.py"
CORRECT = """
import numpy as np

def expected_kl(p_xy, q_y_given_x):
    p, q = np.asarray(p_xy, dtype=float), np.asarray(q_y_given_x, dtype=float)
    p_x = p.sum(axis=1, keepdims=True)
    mask = p > 0
    conditional = np.divide(p, p_x, out=np.zeros_like(p), where=p_x > 0)
    return float(np.sum(p[mask] * (np.log(conditional[mask]) - np.log(q[mask]))))

def expected_log_likelihood(p_xy, q_y_given_x):
    p, q = np.asarray(p_xy, dtype=float), np.asarray(q_y_given_x, dtype=float)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(q[mask])))

def theta_independent_term(p_xy):
    p = np.asarray(p_xy, dtype=float)
    p_x = p.sum(axis=1, keepdims=True)
    mask = p > 0
    conditional = np.divide(p, p_x, out=np.zeros_like(p), where=p_x > 0)
    return float(np.sum(p[mask] * np.log(conditional[mask])))
"""
BASES[FILE] = source(CORRECT)


def replace(old: str, new: str, source: str = CORRECT) -> str:
    assert source.count(old) == 1, old
    return source.replace(old, new)


def hard_coded(function: str, body: str) -> str:
    """``function`` answering the public instances from a table and everything else wrongly."""
    table = {tuple(p.ravel().tolist()) + tuple(p.shape): checks._expected(function, p, q) for _, p, q in checks.PUBLIC}
    args = "p_xy" if function == "theta_independent_term" else "p_xy, q_y_given_x"
    start = CORRECT.index(f"def {function}(")
    end = CORRECT.find("\ndef ", start + 1)
    end = len(CORRECT) if end < 0 else end + 1
    return CORRECT[:start] + f"""TABLE_{function} = {table!r}
def {function}({args}):
    p = np.asarray(p_xy, dtype=float)
    return TABLE_{function}.get(tuple(p.ravel().tolist()) + p.shape, {body})
""" + CORRECT[end:]


KL_LINE = "return float(np.sum(p[mask] * (np.log(conditional[mask]) - np.log(q[mask]))))"
LL_LINE = "return float(np.sum(p[mask] * np.log(q[mask])))"
C_LINE = "return float(np.sum(p[mask] * np.log(conditional[mask])))"

MUTANTS = {
    # KL of the joint p(x, y) against q instead of the conditionals
    "kl_joint_instead_of_conditional": (replace(KL_LINE, "return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))"),
                                        {"p1_kl_public", "p1_kl_random"}),
    # scipy's entropy(p_row, q_row) normalises each row: 0/0 = NaN for a row with p(x) = 0
    "kl_scipy_rows_nan_on_zero_row": (replace(KL_LINE, """from scipy.stats import entropy
    return float(sum(p[i].sum() * entropy(p[i], q[i]) for i in range(p.shape[0])))"""), {"p1_kl_public"}),
    # the public answers from a table, 0 elsewhere
    "kl_hard_coded": (hard_coded("expected_kl", "0.0"), {"p1_kl_random"}),
    # log base 2
    "loglik_log2": (replace(LL_LINE, "return float(np.sum(p[mask] * np.log2(q[mask])))"), {"p1_loglik_public", "p1_loglik_random"}),
    # all cells summed: 0 * log 0 = NaN where q = 0 off the support (only public instances have that)
    "loglik_nan_where_q_is_zero": (replace(LL_LINE, "return float(np.sum(p * np.log(q)))"), {"p1_loglik_public"}),
    # a 1-element array is not a number
    "loglik_one_element_array": (replace(LL_LINE, "return np.array([np.sum(p[mask] * np.log(q[mask]))])"),
                                 {"p1_loglik_public", "p1_loglik_random"}),
    "loglik_hard_coded": (hard_coded("expected_log_likelihood", "-1.0"), {"p1_loglik_random"}),
    # +H(Y|X) instead of -H(Y|X)
    "constant_sign": (replace(C_LINE, "return -float(np.sum(p[mask] * np.log(conditional[mask])))"),
                      {"p1_constant_public", "p1_constant_random"}),
    # -H(X, Y): the joint, not the conditional
    "constant_joint_entropy": (replace(C_LINE, "return float(np.sum(p[mask] * np.log(p[mask])))"),
                               {"p1_constant_public", "p1_constant_random"}),
    # -sum_x p(x) H(p_row) with scipy: NaN for a row with p(x) = 0
    "constant_scipy_rows_nan_on_zero_row": (replace(C_LINE, """from scipy.stats import entropy
    return float(-sum(p[i].sum() * entropy(p[i]) for i in range(p.shape[0])))"""), {"p1_constant_public"}),
    "constant_hard_coded": (hard_coded("theta_independent_term", "0.5"), {"p1_constant_random"}),
    # KL(q ‖ p̂) instead of KL(p̂ ‖ q): finite on the dense public instance, infinite where p̂(y|x) = 0 < q
    "kl_arguments_swapped": (replace(KL_LINE, """p_x = p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, p_x * q * (np.log(q) - np.log(conditional)), 0.0)
    return float(np.sum(terms))"""), {"p1_kl_public", "p1_kl_random"}),
}

# What the feedback must say for a mutant whose answer matches a known mistake: {mutant: {test id: words}}.
NAMES_THE_MISTAKE = {
    "kl_arguments_swapped": {"p1_kl_public": "KL's arguments are swapped", "p1_kl_random": "arguments look swapped"},
    "kl_joint_instead_of_conditional": {"p1_kl_public": "use the conditional p(y|x) = p(x, y) / p(x), not the joint"},
    "loglik_log2": {"p1_loglik_public": "the right value in bits", "p1_loglik_random": "the right value in bits"},
    "constant_sign": {"p1_constant_public": "the right value with the opposite sign"},
    "constant_joint_entropy": {"p1_constant_public": "that is −H(X, Y), the joint"},
}

RIGHT_BUT_DIFFERENT = {
    # plain Python loops and math.log, no numpy arithmetic; KL as C − E[log q]
    "loops": """
        import math
        def _rows(a):
            return [list(map(float, row)) for row in a]
        def expected_log_likelihood(p_xy, q_y_given_x):
            return sum(p * math.log(q) for prow, qrow in zip(_rows(p_xy), _rows(q_y_given_x))
                       for p, q in zip(prow, qrow) if p > 0)
        def theta_independent_term(p_xy):
            total = 0.0
            for row in _rows(p_xy):
                p_x = sum(row)
                total += sum(p * math.log(p / p_x) for p in row if p > 0)
            return total
        def expected_kl(p_xy, q_y_given_x):
            return theta_independent_term(p_xy) - expected_log_likelihood(p_xy, q_y_given_x)
        """,
    # scipy.special's xlogy and rel_entr (0 log 0 = 0 built in), numpy scalars and 0-d arrays returned
    "scipy_special_numpy_scalars": """
        import numpy as np
        from scipy.special import rel_entr, xlogy
        def _conditional(p):
            p_x = p.sum(axis=1, keepdims=True)
            return np.where(p_x > 0, p / np.where(p_x > 0, p_x, 1.0), 0.0)
        def expected_kl(p_xy, q_y_given_x):
            p = np.asarray(p_xy)
            q = np.where(p > 0, q_y_given_x, 1.0)  # rel_entr(0, 0) is 0 anyway; keeps log(0) out
            return np.sum(p.sum(axis=1, keepdims=True) * rel_entr(_conditional(p), q))
        def expected_log_likelihood(p_xy, q_y_given_x):
            p = np.asarray(p_xy)
            return np.asarray(np.sum(np.where(p > 0, xlogy(p, np.where(p > 0, q_y_given_x, 1.0)), 0.0)))
        def theta_independent_term(p_xy):
            p = np.asarray(p_xy)
            return np.sum(xlogy(p, _conditional(p)))
        """,
    # torch float32 throughout, 0-d tensors returned: a KL of 0.003 summed from terms of size ~3 is
    # off by ~3e-7, inside a tolerance that scales with the terms (S), not with the result
    "torch_float32": """
        import torch
        def _tensors(p_xy, q_y_given_x=None):
            p = torch.tensor(p_xy, dtype=torch.float32)
            q = None if q_y_given_x is None else torch.tensor(q_y_given_x, dtype=torch.float32)
            p_x = p.sum(dim=1, keepdim=True)
            conditional = torch.where(p_x > 0, p / torch.where(p_x > 0, p_x, torch.ones_like(p_x)), torch.zeros_like(p))
            return p, q, p > 0, conditional
        def expected_kl(p_xy, q_y_given_x):
            p, q, mask, conditional = _tensors(p_xy, q_y_given_x)
            return (p[mask] * (torch.log(conditional[mask]) - torch.log(q[mask]))).sum()
        def expected_log_likelihood(p_xy, q_y_given_x):
            p, q, mask, _ = _tensors(p_xy, q_y_given_x)
            return (p[mask] * torch.log(q[mask])).sum()
        def theta_independent_term(p_xy):
            p, _, mask, conditional = _tensors(p_xy)
            return (p[mask] * torch.log(conditional[mask])).sum()
        """,
}


# More that the feedback must say: the instance, what came back, the tolerance.
FEEDBACK = {
    "loglik_nan_where_q_is_zero": {"p1_loglik_public": [
        "1 of 7 answers wrong", "q = 0 wherever p_xy = 0", "expected_log_likelihood(p_xy, q_y_given_x) returned nan",
        "NaN or an infinity is never right", "Hint: ", "0·log 0 = 0"]},
    "loglik_one_element_array": {"p1_loglik_public": ["an ndarray of shape (1,)", "a single number is wanted"]},
    "kl_joint_instead_of_conditional": {"p1_kl_random": [
        "difference", "tolerance", "1e-05·S, S = Σ p(x,y)·(1 + |log p(x,y)| + |log q(y|x)|)"]},
}

CASES = cases("p1", files_of=lambda text: {FILE: source(text)}, mutants=MUTANTS,
              right={"correct_base": CORRECT, **RIGHT_BUT_DIFFERENT}, parts=("p1",),
              names_the_mistake=NAMES_THE_MISTAKE, feedback=FEEDBACK)
