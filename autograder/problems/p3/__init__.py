"""P3: parameter counts."""
from autograder.registry import Problem

PROBLEM = Problem(
    name="p3", title="Parameter counts", files=("p3_param_counts.py",), parts=("p3a", "p3b", "p3c"),
    functions={"p3_param_counts.py": ("full_joint", "independent", "markov")})
