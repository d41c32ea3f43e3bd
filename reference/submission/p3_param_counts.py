"""P3 reference: numbers of free parameters of discrete joint distributions.

Every answer is an exact Python int (math.prod of ints never rounds), so counts beyond
2**53 or 2**63 stay exact.
"""
import math


def full_joint(k):
    """Free parameters of a joint over X_1..X_n with k[i] values each and no independence
    assumptions: one probability per joint outcome, minus one for normalisation."""
    return math.prod(int(ki) for ki in k) - 1


def independent(k):
    """Free parameters when X_1..X_n are mutually independent: each marginal has k_i - 1."""
    return sum(int(ki) - 1 for ki in k)


def markov(k, m):
    """Free parameters when, in the order 1..n, X_i (i > m) depends only on the m previous
    variables: a full joint over X_1..X_m, then one (k_i - 1)-entry table per configuration
    of X_{i-m}..X_{i-1}."""
    k = [int(ki) for ki in k]
    head = math.prod(k[:m]) - 1
    tail = sum((k[i] - 1) * math.prod(k[i - m:i]) for i in range(m, len(k)))
    return head + tail
