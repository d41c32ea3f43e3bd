"""P2: Gaussian class-conditionals and softmax."""
from autograder.registry import Problem

PROBLEM = Problem(
    name="p2", title="Gaussian class-conditionals and softmax", files=("p2_gaussian_softmax.py",), parts=("p2",),
    functions={"p2_gaussian_softmax.py": ("softmax_parameters",)})
