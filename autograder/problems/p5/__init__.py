"""P5: the bias of Monte Carlo estimators."""
from autograder.registry import Problem

PROBLEM = Problem(
    name="p5", title="Monte Carlo estimator bias", files=("p5_monte_carlo.py",), parts=("p5a", "p5b"),
    functions={"p5_monte_carlo.py": ("estimate_marginal", "log_estimate_marginal", "log_estimator_is_unbiased")},
    harness_modules=("child",))
