"""P3: counting parameters of discrete joint distributions.

X_1 … X_n discrete, X_i with k[i] values. Every answer is an exact int (a Python int; counts
can exceed 2**63, where numpy integers overflow and floats round). A float or bool is wrong.
"""


def full_joint(k):
    """Free parameters of the joint over X_1..X_n with no independence assumptions."""
    raise NotImplementedError


def independent(k):
    """Free parameters under the assumption that gives sum_i (k_i - 1)."""
    raise NotImplementedError


def markov(k, m):
    """Free parameters when, in the order 1..n, X_i for i > m is independent of its other
    ancestors given the m previous variables (1 <= m < n)."""
    raise NotImplementedError
