"""P3 proven by mutants: each wrong submission loses exactly the checks it should, and each
right-but-different one keeps full marks."""
import pytest

from conftest import ids_of_part, make_submission, rubric_of_parts

CORRECT = """
from math import prod
def full_joint(k): return prod(k) - 1
def independent(k): return sum(x - 1 for x in k)
def markov(k, m):
    return prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k)))
"""


def replace(old: str, new: str) -> str:
    assert old in CORRECT
    return CORRECT.replace(old, new)


MUTANTS = {
    # p3a: forgets the normalisation constraint
    "full_joint_no_minus_one": (replace("return prod(k) - 1", "return prod(k)"), {"p3a_public", "p3a_random"}),
    # p3a: numpy product overflows int64 past 2**63, right on small instances only
    "full_joint_numpy_int64": (replace("def full_joint(k): return prod(k) - 1",
                                       "import numpy as np\ndef full_joint(k): return int(np.prod(np.array(k, dtype=np.int64))) - 1"),
                               {"p3a_random"}),
    # p3a: a float answer, even when the value is right
    "full_joint_float": (replace("return prod(k) - 1", "return float(prod(k) - 1)"), {"p3a_public", "p3a_random"}),
    # p3a: hard-coded public answers
    "full_joint_hard_coded": (replace("def full_joint(k): return prod(k) - 1", """
PUBLIC = {(2, 2): 3, (3, 4, 5): 59, (2,) * 10: 1023, (7,): 6, (1, 3): 2, (10, 1, 4): 39, (6, 5, 4, 3, 2): 719}
def full_joint(k): return PUBLIC.get(tuple(k), 0)"""), {"p3a_random"}),
    # p3b: counts k_i instead of k_i - 1
    "independent_sum_k": (replace("return sum(x - 1 for x in k)", "return sum(k)"), {"p3b_public", "p3b_random"}),
    # p3b: float arithmetic, exact only below 2**53
    "independent_float_sum": (replace("return sum(x - 1 for x in k)", "return int(sum(float(x) for x in k)) - len(k)"),
                              {"p3b_random"}),
    # p3b: a bool is not a count
    "independent_bool": (replace("return sum(x - 1 for x in k)", "return True if k == [2, 2] and False else sum(x - 1 for x in k) if len(k) > 1 else True"),
                         {"p3b_public"}),
    # p3c: window of m + 1 parents
    "markov_window_off_by_one": (replace("prod(k[i - m:i])", "prod(k[max(0, i - m - 1):i])"), {"p3c_public", "p3c_random"}),
    # p3c: right only for m = 1
    "markov_only_first_order": (replace("prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k)))",
                                        "k[0] - 1 + sum((k[i] - 1) * k[i - 1] for i in range(1, len(k)))"),
                                {"p3c_public", "p3c_random"}),
    # p3c: int64 overflow on the big instances only
    "markov_numpy_int64": (replace("prod(k[i - m:i])", "int(__import__('numpy').prod(k[i - m:i]))"), {"p3c_random"}),
    # p3c: window of m - 1 parents
    "markov_window_too_short": (replace("prod(k[i - m:i])", "prod(k[i - m + 1:i])"), {"p3c_public", "p3c_random"}),
    # p3a: a sympy Integer is not an int
    "full_joint_sympy_integer": (replace("def full_joint(k): return prod(k) - 1",
                                         "import sympy\ndef full_joint(k): return sympy.Integer(prod(k) - 1)"),
                                 {"p3a_public", "p3a_random"}),
}

# What the feedback must say for a mutant whose answer matches a known mistake: {mutant: {test id: words}}.
NAMES_THE_MISTAKE = {
    "full_joint_no_minus_one": {"p3a_public": "subtract one"},
    "full_joint_numpy_int64": {"p3a_random": "int64 overflow"},
    "full_joint_float": {"p3a_random": "a count must be an exact int"},
    "full_joint_sympy_integer": {"p3a_public": "full_joint([2, 2]) returned a sympy.core.numbers.Integer",
                                 "p3a_random": "convert the count with int(...)"},
    "independent_sum_k": {"p3b_public": "k_i - 1 free parameters, not k_i"},
    "independent_float_sum": {"p3b_random": "rounded to a float"},
    "markov_window_off_by_one": {"p3c_public": "the Markov window is off by one", "p3c_random": "off by one"},
    "markov_window_too_short": {"p3c_public": "the Markov window is off by one"},
    "markov_only_first_order": {"p3c_random": "previous variables, not m ="},
    "markov_numpy_int64": {"p3c_random": "int64 overflow"},
}

RIGHT_BUT_DIFFERENT = {
    "loops_and_reduce": """
        import functools, operator
        def full_joint(k):
            total = 1
            for size in k:
                total *= size
            return total - 1
        def independent(k):
            return functools.reduce(operator.add, [int(x) for x in k]) - len(k)
        def markov(k, m):
            # the first term written as sum_{i<=m} (k_i - 1) prod_{j<i} k_j
            first = sum((k[i] - 1) * functools.reduce(operator.mul, k[:i], 1) for i in range(m))
            rest = sum((k[i] - 1) * functools.reduce(operator.mul, k[i - m:i], 1) for i in range(m, len(k)))
            return first + rest
        """,
    "numpy_ints_when_small": """
        import math
        import numpy as np
        def _small(value):
            return np.int64(value) if abs(value) < 2**62 else value
        def full_joint(k): return _small(math.prod(k) - 1)
        def independent(k): return _small(sum(k) - len(k))
        def markov(k, m):
            return _small(math.prod(k[:m]) - 1 + sum((k[i] - 1) * math.prod(k[i - m:i]) for i in range(m, len(k))))
        """,
}


@pytest.fixture
def rubric(tmp_path):
    """P3's tests only: grading the whole rubric (P6 included) would cost far more per mutant."""
    return rubric_of_parts(tmp_path / "rubric-p3.yaml", "p3a", "p3b", "p3c")


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_wrong_submission_loses_exactly_its_checks(tmp_path, grade_submission, rubric_ids, rubric, name):
    source, lose = MUTANTS[name]
    graded = grade_submission(make_submission(tmp_path / name, {"p3_param_counts.py": source}), rubric=rubric)
    assert set(graded.rows) == ids_of_part(rubric_ids, "p3a", "p3b", "p3c")
    assert graded.failed() == lose, {t: graded.output(t) for t in graded.failed() ^ lose}
    for test_id in lose:
        assert graded.score(test_id) == 0
        function = {"p3a": "full_joint(", "p3b": "independent(", "p3c": "markov("}[test_id[:3]]
        assert function in graded.output(test_id)  # feedback names the call that went wrong
    for test_id, words in NAMES_THE_MISTAKE.get(name, {}).items():
        assert words in graded.output(test_id), graded.output(test_id)


@pytest.mark.parametrize("name", sorted(RIGHT_BUT_DIFFERENT))
def test_right_but_different_keeps_full_marks(tmp_path, grade_submission, rubric_ids, rubric, name):
    graded = grade_submission(make_submission(tmp_path / name, {"p3_param_counts.py": RIGHT_BUT_DIFFERENT[name]}),
                              rubric=rubric)
    assert graded.failed() == set(), {t: graded.output(t) for t in graded.failed()}
    assert all(graded.score(t) > 0 for t in ids_of_part(rubric_ids, "p3a", "p3b", "p3c"))


def test_feedback_names_call_expected_got_and_hint(tmp_path, grade_submission, rubric):
    graded = grade_submission(make_submission(tmp_path / "s", {"p3_param_counts.py": MUTANTS["full_joint_no_minus_one"][0]}),
                              rubric=rubric)
    text = graded.output("p3a_public")
    assert "full_joint([2, 2]) returned 4" in text and "expected 3" in text
    assert "Hint: one joint probability is fixed by the others" in text
    assert "7 of 7 answers wrong" in text
    floats = grade_submission(make_submission(tmp_path / "f", {"p3_param_counts.py": MUTANTS["full_joint_float"][0]}),
                              rubric=rubric)
    assert "a float (a count must be an exact int" in floats.output("p3a_public")


def test_each_run_draws_its_own_random_instances(tmp_path, grade_submission, rubric):
    """An answer table for one seed's random instances fails under another seed."""
    from autograder.problems.p3 import test_p3_param_counts as checks
    import numpy as np
    import zlib
    rng = np.random.default_rng([1, zlib.crc32(b"p3a_random")])
    table = {tuple(k): checks.reference.full_joint(k) for k in checks.random_k(rng, count=20)}
    table.update({tuple(k): checks.reference.full_joint(k) for k in checks.PUBLIC_K})
    source = replace("def full_joint(k): return prod(k) - 1", f"TABLE = {table!r}\ndef full_joint(k): return TABLE.get(tuple(k), 0)")
    folder = make_submission(tmp_path / "table", {"p3_param_counts.py": source})
    assert "p3a_random" not in grade_submission(folder, seed=1, rubric=rubric).failed()
    assert "p3a_random" in grade_submission(folder, seed=2, rubric=rubric).failed()
