"""P4: forward and reverse autoregressive Gaussians."""
from autograder.registry import Problem

PROBLEM = Problem(
    name="p4", title="Autoregressive models", files=("p4_autoregressive.py",), parts=("p4",),
    functions={"p4_autoregressive.py": ("same_hypothesis_space", "counterexample")},
    harness_modules=("child",))
