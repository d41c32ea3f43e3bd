"""P6: GPT-2 sampling and log-likelihoods, on the grader's side.

Course texts (data.py), instance pools (instances.py), the reference cache (reference.py), the
checks' shared judging (checking.py), plots (plots.py) and the checks (test_p6_*.py); the
harnesses that run the model in the child are child.py and child_classifier.py (P6e's fallback),
and, in clean children only, child_clean.py and child_reference.py (the reference's formulas). Nothing here runs student code or loads the model in the grader's
process: torch and transformers are imported only while the reference cache is built
(tokenizing texts), never while a submission is graded.
"""
from autograder.registry import Problem


def _prepare(model_dir, *, device, files):
    from .reference import reference_outputs
    return reference_outputs(model_dir, device=device, files=files).path


def _prepare_default(*, rubric):
    from .reference import prepare
    return prepare(rubric=rubric)


def _plots(**kwargs):
    from .plots import make_plots
    return make_plots(**kwargs)


PROBLEM = Problem(
    name="p6", title="GPT-2 sampling and log-likelihoods",
    files=("p6_gpt2_counts.py", "sample.py", "likelihood.py", "classifier.py"),
    parts=("p6a", "p6b", "p6c", "p6d", "p6e", "p6f", "p6g", "p6h"),
    model_parts=frozenset({"p6c", "p6d", "p6e", "p6f", "p6h"}),
    functions={"p6_gpt2_counts.py": ("bits_per_token", "added_parameters", "per_token_temperature_matches_joint"),
               "sample.py": ("top_k_logits", "temperature_scale", "sample"),
               "likelihood.py": ("log_likelihood",), "classifier.py": ("classification",)},
    harness_modules=("child", "child_classifier"), clean_modules=("child_clean", "child_reference"),
    prepare=_prepare, prepare_default=_prepare_default, plots=_plots)
