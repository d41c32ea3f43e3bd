"""P1: maximum likelihood is KL minimisation.

Data distribution p̂(x, y) over finite X × Y as an (|X|, |Y|) array `p_xy` summing to 1 (it may
hold zeros: 0·log 0 = 0, and an x with p̂(x) = 0 contributes nothing); conditional model
q(y|x) as an (|X|, |Y|) array `q_y_given_x` whose rows sum to 1, positive wherever p_xy > 0.
Return Python floats (a numpy float or 0-d tensor is accepted too).
"""
import numpy as np


def expected_kl(p_xy, q_y_given_x):
    """E_{p̂(x)}[ KL(p̂(y|x) || q(y|x)) ]."""
    raise NotImplementedError


def expected_log_likelihood(p_xy, q_y_given_x):
    """E_{p̂(x,y)}[ log q(y|x) ]."""
    raise NotImplementedError


def theta_independent_term(p_xy):
    """The constant C with expected_kl = C - expected_log_likelihood for every q."""
    raise NotImplementedError
