"""P2: Gaussian class-conditionals give a softmax.

p(y) = pi_y, p(x|y) = N(x | mu_y, sigma^2 I) with k classes and x in R^n. Then
p(y|x) = exp(x^T w_y + b_y) / sum_i exp(x^T w_i + b_i).
"""
import numpy as np


def softmax_parameters(pi, mu, sigma):
    """pi: (k,) class priors; mu: (k, n) class means; sigma > 0 (float).

    Returns (W, b): W of shape (k, n) and b of shape (k,) with p(y|x) = softmax(W x + b)_y.
    Only the posterior is identified: adding the same vector to every row of W, or the same
    number to every entry of b, is equally right.
    """
    raise NotImplementedError
