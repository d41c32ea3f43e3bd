"""P3's mutants: int64 overflow, float rounding, off-by-one Markov windows, types that are not
exact ints; loops, reduce and small numpy ints keep full marks. Graded on P3's tests."""
from . import BASES, cases, source

FILE = "p3_param_counts.py"
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
    # every function: a value that is not one int (an ndarray, a list, a str); the known-mistake hints
    # compared them with == once (an array's == made every p3a row an internal grader error)
    "not_an_int": ("""
import numpy as np
from math import prod
def full_joint(k): return np.array(k) - 1
def independent(k): return [x - 1 for x in k]
def markov(k, m):
    return str(prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k))))
""", {"p3a_public", "p3a_random", "p3b_public", "p3b_random", "p3c_public", "p3c_random"}),
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


BASES[FILE] = source(CORRECT)

# More that the feedback must say.
FEEDBACK = {
    "full_joint_no_minus_one": {"p3a_public": [
        "full_joint([2, 2]) returned 4", "expected 3", "Hint: one joint probability is fixed by the others",
        "7 of 7 answers wrong"]},
    "full_joint_float": {"p3a_public": "a float (a count must be an exact int"},
    "not_an_int": {
        "p3a_public": ["full_joint([2, 2]) returned array([1, 1]), an ndarray", "not a sequence or an array",
                       "Hint: a joint with no independence assumptions", "7 of 7 answers wrong"],
        "p3a_random": "a value the grader cannot read",
        "p3b_public": ["independent([2, 2]) returned [1, 1], a list", "not a sequence or an array",
                       "Hint: under mutual independence"],
        "p3c_public": ["markov([2, 2], 1) returned '3', a str", "not a str", "Hint: the first m variables"],
    },
}

CASES = cases("p3", files_of=lambda text: {FILE: source(text)}, mutants=MUTANTS, right=RIGHT_BUT_DIFFERENT,
              parts=("p3a", "p3b", "p3c"), names_the_mistake=NAMES_THE_MISTAKE, feedback=FEEDBACK)
