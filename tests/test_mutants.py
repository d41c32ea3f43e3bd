"""Every graded check proven by mutants (the table in tests/mutants): each wrong submission loses
exactly its tests among the parts that could notice it, with feedback that names the call (and,
where its answer matches a known mistake, that mistake: NAMES_THE_MISTAKE in each problem's
table); each right-but-different one keeps full marks. Mutants with disjoint parts share a
grading (tests/mutants/__init__.py says why that is sound)."""
import numpy as np
import pytest

from conftest import make_submission, rubric_of_parts
from mutants import plan
from mutants.table import TABLE

MUTANTS = {m.name: m for m in TABLE}
GROUPS = plan(TABLE)

# Every rubric test of each part (a test dropped from the rubric, or one added without a mutant
# table entry, shows here).
PART_IDS = {
    "p1": {"p1_kl_public", "p1_kl_random", "p1_loglik_public", "p1_loglik_random", "p1_constant_public",
           "p1_constant_random"},
    "p2": {"p2_uniform_public", "p2_nonuniform_public", "p2_random"},
    "p3a": {"p3a_public", "p3a_random"}, "p3b": {"p3b_public", "p3b_random"}, "p3c": {"p3c_public", "p3c_random"},
    "p4": {"p4_same_space", "p4_counterexample_form", "p4_counterexample_marginal"},
    "p5a": {"p5a_public", "p5a_random", "p5a_variance", "p5a_rng"},
    "p5b": {"p5b_answer", "p5b_public", "p5b_random", "p5b_rng"},
    "p6a": {"p6a_public", "p6a_random"}, "p6b": {"p6b_public", "p6b_random"},
    "p6c": {"p6c_form", "p6c_top_k", "p6c_support", "p6c_distribution_public", "p6c_distribution_random",
            "p6c_second_step"},
    "p6d": {"p6d_public", "p6d_random"}, "p6e": {"p6e_classification"}, "p6f": {"p6f_public", "p6f_random"},
    "p6g": {"p6g_answer"}, "p6h": {"p6h_public", "p6h_random"},
}
# The call a failed test's feedback names, by test id (or by its part, or its prefix).
CALLS = {
    "p1_kl": "expected_kl(", "p1_loglik": "expected_log_likelihood(", "p1_constant": "theta_independent_term(",
    "p2": "softmax_parameters(pi, mu, sigma)", "p3a": "full_joint(", "p3b": "independent(", "p3c": "markov(",
    "p4_same_space": "same_hypothesis_space()", "p4": "counterexample()", "p5b_answer": "log_estimator_is_unbiased()",
    "p5a": "estimate_marginal(", "p5b": "log_estimate_marginal(", "p6a": "bits_per_token(",
    "p6b": "added_parameters(", "p6c_top_k": "top_k_logits(", "p6c": "sample(", "p6d": "log_likelihood(",
    "p6e": "classification(", "p6f": "temperature_scale(", "p6g": "per_token_temperature_matches_joint(",
    "p6h": "temperature_scale(",
}


def named_call(test_id: str) -> str:
    prefix = max((key for key in CALLS if test_id.startswith(key)), key=len)
    return CALLS[prefix]


def test_every_part_of_the_rubric_has_mutants(rubric_ids):
    assert set().union(*PART_IDS.values()) == set(rubric_ids)
    for part in PART_IDS:
        assert any(part in m.parts and m.lose for m in TABLE), f"no wrong submission for {part}"
        assert any(part in m.parts and not m.lose for m in TABLE), f"no right-but-different submission for {part}"
    caught = set().union(*(m.lose for m in TABLE))
    assert caught == set(rubric_ids), f"checks no mutant fails: {set(rubric_ids) - caught}"


@pytest.mark.slow  # about 20 gradings of the whole rubric's worth of parts: the quick loop leaves them out
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xdist_group(GROUPS[name]))
                                  for name in sorted(MUTANTS)])
def test_mutant(shared_gradings, name):
    mutant = MUTANTS[name]
    graded = shared_gradings.mutant(name)
    ids = set().union(*(PART_IDS[part] for part in mutant.parts))
    rows = {test_id: row for test_id, row in graded.rows.items() if row.test.part in mutant.parts}
    assert set(rows) == ids
    assert mutant.lose <= ids, mutant.lose - ids
    failed = {test_id for test_id, row in rows.items() if not row.passed}
    expected = mutant.lose | (failed & mutant.may_lose)
    assert failed == expected, {t: rows[t].output for t in failed ^ expected}
    for test_id, row in rows.items():
        if test_id in expected:
            assert row.score == 0
            assert named_call(test_id) in row.output, row.output  # feedback names the call that went wrong
            assert "Internal grader error" not in row.output, row.output
        else:
            assert row.score == row.test.weight, row.output
    for test_id, words in mutant.words.items():
        if test_id in mutant.may_lose and test_id not in failed:
            continue  # it did not catch the mutant this time: nothing to name
        for word in words:
            choices = word if isinstance(word, tuple) else (word,)
            assert any(choice in rows[test_id].output for choice in choices), (choices, rows[test_id].output)


def test_each_run_draws_its_own_random_instances(tmp_path, grade_submission):
    """An answer table for one seed's random instances fails under another seed (P3)."""
    import zlib

    from autograder.problems.p3 import test_p3_param_counts as checks
    from mutants import p3
    rubric = rubric_of_parts(tmp_path / "rubric-p3.yaml", "p3a", "p3b", "p3c")
    rng = np.random.default_rng([1, zlib.crc32(b"p3a_random")])
    table = {tuple(k): checks.reference.full_joint(k) for k in checks.random_k(rng, count=20)}
    table.update({tuple(k): checks.reference.full_joint(k) for k in checks.PUBLIC_K})
    source = p3.replace("def full_joint(k): return prod(k) - 1",
                        f"TABLE = {table!r}\ndef full_joint(k): return TABLE.get(tuple(k), 0)")
    folder = make_submission(tmp_path / "table", {"p3_param_counts.py": source})
    assert "p3a_random" not in grade_submission(folder, seed=1, rubric=rubric).failed()
    assert "p3a_random" in grade_submission(folder, seed=2, rubric=rubric).failed()


def test_the_model_callables_lead_to_no_model_object():
    """What a P5 submission is handed: plain functions, no bound methods (``__self__``), no defaults,
    no attributes, and nothing of the model in their globals; only their closures hold its two
    numbers (see autograder/problems/p5/child.py: knowing them gains nothing, as the mutant
    p5-reads_the_model_and_returns_the_closed_form shows)."""
    from autograder.problems.p5 import child as harness
    sample_prior, likelihood = harness.gaussian_latent(1.37, 0.59)
    for function in (sample_prior, likelihood):
        assert not hasattr(function, "__self__") and not hasattr(function, "__wrapped__")
        assert function.__defaults__ is None and function.__kwdefaults__ is None and function.__dict__ == {}
        assert not any(value in (1.37, 0.59) for value in vars(harness).values() if isinstance(value, float))
        assert all(type(c.cell_contents) is float for c in function.__closure__)
    assert sample_prior(3, np.random.default_rng(0)).shape == (3,)
