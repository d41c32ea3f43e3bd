"""P1 proven by mutants: each wrong submission loses exactly the checks it should, and each
right-but-different one keeps full marks. Grading uses a rubric of P1's tests only."""
import pytest

from autograder.problems.p1 import test_p1_mle_kl as checks
from conftest import make_submission, rubric_of_parts

P1_IDS = {"p1_kl_public", "p1_kl_random", "p1_loglik_public", "p1_loglik_random", "p1_constant_public",
          "p1_constant_random"}

# Each function written on its own (none calls another), so a mutant of one cannot touch the others.
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
}


@pytest.fixture
def rubric(tmp_path):
    return rubric_of_parts(tmp_path / "rubric-p1.yaml", "p1")


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_wrong_submission_loses_exactly_its_checks(tmp_path, grade_submission, rubric, name):
    source, lose = MUTANTS[name]
    graded = grade_submission(make_submission(tmp_path / name, {"p1_mle_kl.py": source}), rubric=rubric)
    assert set(graded.rows) == P1_IDS
    assert graded.failed() == lose, {t: graded.output(t) for t in graded.failed() ^ lose}
    for test_id in lose:
        assert graded.score(test_id) == 0
        function = {"kl": "expected_kl(", "loglik": "expected_log_likelihood(", "constant": "theta_independent_term("}
        assert function[test_id.split("_")[1]] in graded.output(test_id)  # feedback names the call
    for test_id, words in NAMES_THE_MISTAKE.get(name, {}).items():
        assert words in graded.output(test_id), graded.output(test_id)


def test_correct_base_keeps_full_marks(tmp_path, grade_submission, rubric):
    graded = grade_submission(make_submission(tmp_path / "base", {"p1_mle_kl.py": CORRECT}), rubric=rubric)
    assert graded.failed() == set(), {t: graded.output(t) for t in graded.failed()}


@pytest.mark.parametrize("name", sorted(RIGHT_BUT_DIFFERENT))
def test_right_but_different_keeps_full_marks(tmp_path, grade_submission, rubric, name):
    graded = grade_submission(make_submission(tmp_path / name, {"p1_mle_kl.py": RIGHT_BUT_DIFFERENT[name]}), rubric=rubric)
    assert graded.failed() == set(), {t: graded.output(t) for t in graded.failed()}
    assert all(graded.score(t) == graded.rows[t].test.weight for t in P1_IDS)


def test_feedback_names_instance_expected_got_and_hint(tmp_path, grade_submission, rubric):
    graded = grade_submission(make_submission(tmp_path / "s", {"p1_mle_kl.py": MUTANTS["loglik_nan_where_q_is_zero"][0]}),
                              rubric=rubric)
    text = graded.output("p1_loglik_public")
    assert "1 of 7 answers wrong" in text
    assert "q = 0 wherever p_xy = 0" in text  # the instance
    assert "expected_log_likelihood(p_xy, q_y_given_x) returned nan" in text
    assert "NaN or an infinity is never right" in text and "Hint: " in text and "0·log 0 = 0" in text
    array = grade_submission(make_submission(tmp_path / "a", {"p1_mle_kl.py": MUTANTS["loglik_one_element_array"][0]}),
                             rubric=rubric)
    assert "an ndarray of shape (1,)" in array.output("p1_loglik_public")
    assert "a single number is wanted" in array.output("p1_loglik_public")
    joint = grade_submission(make_submission(tmp_path / "j", {"p1_mle_kl.py": MUTANTS["kl_joint_instead_of_conditional"][0]}),
                             rubric=rubric)
    assert "difference" in joint.output("p1_kl_random") and "tolerance" in joint.output("p1_kl_random")
