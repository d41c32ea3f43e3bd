"""P1: maximum likelihood and KL divergence."""
from autograder.registry import Problem

PROBLEM = Problem(
    name="p1", title="Maximum likelihood and KL", files=("p1_mle_kl.py",), parts=("p1",),
    functions={"p1_mle_kl.py": ("expected_kl", "expected_log_likelihood", "theta_independent_term")})
