"""P1: maximum likelihood is KL minimisation (reference answer).

For a data distribution p̂(x, y) on a finite X × Y and a conditional model q(y|x):

    E_p̂(x)[KL(p̂(y|x) ‖ q(y|x))] = E_p̂(x,y)[log p̂(y|x)] − E_p̂(x,y)[log q(y|x)],

and the first term (= −H(Y|X) under p̂) does not involve the model, so maximising the expected
log-likelihood minimises the expected KL.

Conventions: 0·log 0 = 0, so cells with p̂(x, y) = 0 (and hence rows with p̂(x) = 0) contribute
nothing; q only has to be positive where p̂ is.
"""

import numpy as np


def _support(p_xy, q_y_given_x=None):
    """Return (p, q, mask) as float64 arrays; mask marks the cells with p̂(x, y) > 0."""
    p = np.asarray(p_xy, dtype=np.float64)  # (|X|, |Y|)
    q = None if q_y_given_x is None else np.asarray(q_y_given_x, dtype=np.float64)  # (|X|, |Y|)
    return p, q, p > 0


def _conditional(p):
    """p̂(y|x) = p̂(x, y) / p̂(x) on rows with p̂(x) > 0; rows with p̂(x) = 0 stay 0 (never used)."""
    p_x = p.sum(axis=1, keepdims=True)  # (|X|, 1)
    return np.divide(p, p_x, out=np.zeros_like(p), where=p_x > 0)


def expected_kl(p_xy, q_y_given_x):
    """E_p̂(x)[KL(p̂(y|x) ‖ q(y|x))] = Σ_{x,y: p̂(x,y)>0} p̂(x,y) log(p̂(y|x) / q(y|x)), as a float."""
    p, q, mask = _support(p_xy, q_y_given_x)
    p_y_given_x = _conditional(p)
    # Only the support is summed: that is the 0·log 0 = 0 convention, and it keeps log(0) out.
    return float(np.sum(p[mask] * (np.log(p_y_given_x[mask]) - np.log(q[mask]))))


def expected_log_likelihood(p_xy, q_y_given_x):
    """E_p̂(x,y)[log q(y|x)] = Σ_{x,y: p̂(x,y)>0} p̂(x,y) log q(y|x), as a float."""
    p, q, mask = _support(p_xy, q_y_given_x)
    return float(np.sum(p[mask] * np.log(q[mask])))


def theta_independent_term(p_xy):
    """C = E_p̂(x,y)[log p̂(y|x)] = −H(Y|X), the model-free term: expected_kl = C − expected_log_likelihood."""
    p, _, mask = _support(p_xy)
    p_y_given_x = _conditional(p)
    return float(np.sum(p[mask] * np.log(p_y_given_x[mask])))
