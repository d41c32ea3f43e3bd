"""P6's building blocks without grading a submission: the goodness-of-fit test (false-fail
bound, power), the tie-aware comparison of temperature_scale outputs, the course data and the
rubric's data section, and the power of the sampling checks on the tiny model's prompts."""
import pickle

import numpy as np
import pytest

from autograder.compare import CheckFailed
from autograder.statistical import kl_threshold, multinomial_fit_test
from autograder.problems.p6 import data as p6_data
from autograder.problems.p6.checking import MASKED, TIE_EPS, check_scaled
from autograder.problems.p6.reference import Prompt, Scaled
from autograder.rubric import RubricError, data_files
from conftest import COURSE_DATA

# -- the G-test -----------------------------------------------------------------------------------


def test_kl_threshold_solves_agrawals_bound():
    for draws, cells, alpha in [(1200, 20, 1e-6), (50, 3, 1e-3), (10_000, 41, 5e-7)]:
        x = draws * kl_threshold(draws, cells, alpha)
        bound = np.exp(-x) * (np.e * x / (cells - 1)) ** (cells - 1)
        assert bound == pytest.approx(alpha, rel=1e-9)
    assert kl_threshold(100, 1, 1e-6) == pytest.approx(np.log(1e6) / 100)


@pytest.mark.parametrize("probabilities", [np.full(10, 0.1), np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02])])
def test_fit_test_fails_correct_draws_less_often_than_its_bound(probabilities):
    """At false-fail 1e-2 (so that a simulation can see it): 20000 runs of 300 draws."""
    rng = np.random.default_rng(0)
    counts = rng.multinomial(300, probabilities, size=20_000)
    failures = sum(not multinomial_fit_test(c, probabilities, false_fail=1e-2, min_expected=0).passed for c in counts)
    assert failures / len(counts) <= 1e-2


def test_fit_test_pools_small_cells_and_refuses_impossible_draws():
    probabilities = np.array([0.6, 0.3, 0.09, 0.01, 0.0])
    test = multinomial_fit_test([60, 30, 9, 1, 0], probabilities, min_expected=5)
    assert test.labels == ("0", "1", "2", "other") and test.passed  # 100 draws: cell 3 expected once, pooled
    assert test.divergence == pytest.approx(0.0, abs=1e-12)
    impossible = multinomial_fit_test([60, 30, 9, 0, 1], probabilities, min_expected=5)
    assert impossible.divergence == np.inf and not impossible.passed
    pooled = multinomial_fit_test([60, 30, 9, 0, 1], probabilities, min_expected=5, pool=[0, 0, 0, 1, 1])
    assert pooled.passed  # a tie outside the support, pooled with a cell of positive probability
    greedy = multinomial_fit_test([100, 0, 0, 0, 0], probabilities)
    assert not greedy.passed and "token" not in greedy.table() and "0: drawn 100 times" in greedy.table()


# -- temperature_scale outputs with top-k ties ----------------------------------------------------
V, K = 12, 4


def _prompt(logits: np.ndarray) -> Prompt:
    order = np.argsort(-logits, kind="stable")
    top = order[:K]
    near = np.array([i for i in order[K:] if logits[i] >= logits[top[-1]] - 0.05], dtype=np.int64)
    return Prompt("p", "random", True, "ab", (1, 2), top, logits[top], near, logits[near])


def _entry(row) -> dict:
    return {"value": np.asarray(row, dtype=np.float32)[None]}


def _filtered(logits: np.ndarray, keep) -> np.ndarray:
    row = np.full(V, MASKED)
    row[keep] = logits[keep]
    return row


LOGITS = np.array([3.0, 1.0, 2.5, 0.2, 2.0, 1.5, -1.0, 1.5 - TIE_EPS / 2, 0.0, -2.0, 0.5, -0.5])
# top 4: ids 0, 2, 4, 5 (1.5); id 7 (1.495) is within TIE_EPS of the 4th: a tie


def _check(row, *, horizon=1, temperature=0.5, scaled=None):
    prompt = _prompt(LOGITS)
    keep = prompt.top_ids
    expected = scaled or Scaled(keep, LOGITS[keep] / temperature, MASKED / temperature)
    check_scaled(_entry(row), prompt, expected, vocab_size=V, horizon=horizon, temperature=temperature,
                 call="temperature_scale(...)", hint="h")


def test_horizon_one_accepts_either_side_of_a_tie_and_any_mask_value():
    _check(_filtered(LOGITS, [0, 2, 4, 5]) / 0.5)
    _check(_filtered(LOGITS, [0, 2, 4, 7]) / 0.5)  # another device's top-k kept the tie instead
    _check(np.where(_filtered(LOGITS, [0, 2, 4, 5]) > -1e9, LOGITS / 0.5, MASKED))  # masks left at -1e10


def test_horizon_one_refuses_wrong_masks_values_and_shifts():
    with pytest.raises(CheckFailed, match="kept or masked wrongly, e.g. token 1 kept"):
        _check(_filtered(LOGITS, [0, 1, 2, 4]) / 0.5)
    with pytest.raises(CheckFailed, match=r"3 of 12 entries off; the worst, logits\[0, 0\]"):
        _check(_filtered(LOGITS, [0, 2, 4, 5]) * 0.5)
    with pytest.raises(CheckFailed):
        _check(_filtered(LOGITS, [0, 2, 4, 5]) / 0.5 + np.where(LOGITS > 1.4, 1.0, 0.0))  # a shift: not for horizon 1


def test_horizon_two_allows_one_common_shift_but_needs_exact_masks():
    keep = np.array([0, 2, 4, 5])
    values = np.array([1.0, 0.5, 0.2, -0.3])
    scaled = Scaled(keep, values, MASKED)
    row = np.full(V, MASKED)
    row[keep] = values + 3.0
    _check(row, horizon=2, scaled=scaled)
    row[keep[1]] += 0.1
    with pytest.raises(CheckFailed, match="after removing a common shift"):
        _check(row, horizon=2, scaled=scaled)
    row = np.full(V, MASKED / 2)
    row[keep] = values
    with pytest.raises(CheckFailed, match="-1e10 for every token"):
        _check(row, horizon=2, scaled=scaled)


# -- data ------------------------------------------------------------------------------------------


def test_data_files_from_rubric_and_environment(tmp_path):
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "english.txt").write_text("first line\n\nsecond line\n")
    with open(tmp_path / "texts" / "random.pkl", "wb") as handle:
        pickle.dump({1: "b", 0: "a"}, handle)
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("data:\n  shakespeare: texts/english.txt\n  random: texts/random.pkl\n"
                      "tests:\n  p6a_x:\n    part: p6a\n    name: x\n    weight: 1\n")
    files = data_files(rubric, environ={})
    assert files == {"shakespeare": tmp_path / "texts" / "english.txt", "random": tmp_path / "texts" / "random.pkl"}
    texts = p6_data.load_course_texts(files)
    assert texts.shakespeare == ("first line", "second line") and texts.random == ("a", "b")
    assert texts.labelled_snippets() is None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "random.txt").write_text("z\n")
    assert data_files(rubric, environ={"AUTOGRADER_DATA_DIR": str(tmp_path / "other")})["random"] == tmp_path / "other" / "random.txt"
    rubric.write_text(rubric.read_text().replace("texts/english.txt", "missing.txt"))
    with pytest.raises(RubricError, match="data.shakespeare"):
        data_files(rubric, environ={})
    rubric.write_text(rubric.read_text().replace("  shakespeare: missing.txt\n", "  poems: x.txt\n"))
    with pytest.raises(RubricError, match="data"):
        data_files(rubric, environ={})


def test_unreadable_data_file_is_named(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(p6_data.DataError, match="bad.pkl"):
        p6_data.read_strings(tmp_path / "bad.pkl")


def test_random_letters_are_reproducible_letters():
    first = p6_data.random_letters(5, length=(3, 9), seed=1)
    assert first == p6_data.random_letters(5, length=(3, 9), seed=1) != p6_data.random_letters(5, length=(3, 9), seed=2)
    assert all(3 <= len(s) <= 9 and s.isalpha() and s.isascii() for s in first)


@pytest.mark.skipif(not COURSE_DATA.is_dir(), reason="the course's data files are not here")
def test_course_snippets_are_labelled_as_the_course_did():
    texts = p6_data.load_course_texts({n: COURSE_DATA / f"{n}.pkl" for n in ("random", "shakespeare", "neurips", "snippets")})
    labelled = texts.labelled_snippets()
    assert len(labelled) == 300 and sum(label for _, label in labelled) == 100
    assert all(text.isalpha() for text, label in labelled if label)


# -- power of the sampling checks on the tiny model ------------------------------------------------


def test_sampling_checks_catch_wrong_temperatures_on_every_pool_prompt(tmp_path):
    """On every pool prompt at every low temperature (the random distribution check always
    draws one), a sampler that ignores T or multiplies by it is off by at least twice the
    test's pass band in relative entropy, at the check's number of draws."""
    from autograder import models
    from autograder.problems.p6.test_p6_sampling import DRAWS
    from autograder.problems.p6.instances import LOW_TEMPERATURES
    from autograder.problems.p6.reference import reference_outputs

    for files in ({}, {n: COURSE_DATA / f"{n}.pkl" for n in ("random", "shakespeare", "neurips", "snippets")}
                  if COURSE_DATA.is_dir() else {}):
        reference = reference_outputs(models.resolve_model("tiny"), device="cpu", files=files)
        for prompt in [p for p in reference.prompts if not p.public]:
            for temperature in LOW_TEMPERATURES:
                right = prompt.distribution(temperature)
                cells = int(np.count_nonzero(right * DRAWS >= 10)) + 1
                band = kl_threshold(DRAWS, cells, 5e-7)
                for wrong in (prompt.distribution(None), prompt.distribution(1 / temperature)):
                    assert np.sum(wrong * np.log(wrong / right)) >= 2 * band, (prompt.id, temperature)


# -- p6e's accuracy mode (needs GPT-2 small to run for real): scored from the answers ------------


class _FakeStudent:
    def __init__(self, answers):
        self.answers = answers

    def harness(self, name, **kwargs):
        assert name == "p6_classification" and len(kwargs["texts"]) == len(self.answers)
        return [{"value": answer} for answer in self.answers]


@pytest.mark.parametrize("right, fraction", [(300, 1.0), (291, 1.0), (250, (250 / 300 - 2 / 3) / (0.95 - 2 / 3)), (200, 0.0)])
def test_accuracy_gives_partial_credit_above_the_majority_rate(right, fraction, monkeypatch):
    from types import SimpleNamespace

    from autograder.problems.p6 import test_p6_likelihood
    from autograder.grading import Outcome
    monkeypatch.setattr(test_p6_likelihood, "SNIPPETS_GRADED", 300)  # all of them, to check the arithmetic

    def _accuracy(student, reference, outcome):
        test_p6_likelihood._accuracy(student, reference, np.random.default_rng(0), outcome)
    labels = [True] * 100 + [False] * 200
    answers = [label if i < right else not label for i, label in enumerate(labels)]
    outcome = Outcome()
    reference = SimpleNamespace(snippets=tuple(((1, 2), label) for label in labels))
    if fraction == 0.0:
        with pytest.raises(CheckFailed, match="66.7% right"):
            _accuracy(_FakeStudent(answers), reference, outcome)
    else:
        _accuracy(_FakeStudent(answers), reference, outcome)
        assert outcome.fraction == pytest.approx(fraction)
    assert f"right on {right} of 300" in outcome.notes[0]


def test_second_step_check_catches_a_temperature_applied_at_the_first_step_only():
    """On every pool prompt at every low temperature, the second token's pooled G-statistic expected
    from a sampler that forgets T after the first step is at least twice the pass band, counting
    only the first tokens expected at least twice MIN_GROUP times in SECOND_DRAWS draws."""
    import torch

    from autograder import models
    from autograder.problems.p6.test_p6_sampling import MIN_GROUP, SECOND_DRAWS
    from autograder.child.course_model import load_course_model
    from autograder.problems.p6.instances import LOW_TEMPERATURES
    from autograder.problems.p6.reference import reference_outputs

    folder = models.resolve_model("tiny")
    reference = reference_outputs(folder, device="cpu", files={})
    model, config = load_course_model(folder)
    for prompt in [p for p in reference.prompts if not p.public]:
        for temperature in LOW_TEMPERATURES:
            first = prompt.distribution(temperature)
            statistic, dof = 0.0, 0
            for token, share in zip(prompt.top_ids, first):
                draws = SECOND_DRAWS * share
                if draws < 2 * MIN_GROUP:
                    continue
                with torch.no_grad():
                    logits = model(torch.tensor([[*prompt.tokens, int(token)]]))[0][0, -1].double()
                top = torch.topk(logits, config.top_k).values.numpy()
                right, wrong = (np.exp(top / t - np.max(top / t)) for t in (temperature, 1.0))
                right, wrong = right / right.sum(), wrong / wrong.sum()
                cells = right * draws >= 10
                right = np.append(right[cells], right[~cells].sum())
                wrong = np.append(wrong[cells], wrong[~cells].sum())
                statistic += draws * np.sum(wrong * np.log(wrong / right))
                dof += len(right) - 1
            assert dof > 0 and statistic >= 2 * kl_threshold(1, dof + 1, 5e-7), (prompt.id, temperature, statistic)


def test_classification_stand_ins_behave_like_the_course_model_and_log_likelihood():
    """The p6e fallback's stand-ins: under the stand-in model a text's log-likelihood is the value
    asked for, however it is computed (all at once, or token by token with the cache); the stand-in
    log_likelihood takes the original's arguments by position or keyword, refuses others as Python
    would, and returns values in the form the original returns."""
    import torch

    from autograder import models
    from autograder.child.course_model import load_course_model
    from autograder.problems.p6.child_classifier import _like_returned, _log_likelihood_stand_in, _text_model
    from reference.submission.likelihood import log_likelihood

    model, config = load_course_model(models.resolve_model("tiny"))
    tokens = [5, 17, 99, 3, 250, 42, 42, 7]
    calls = []
    stand_in_model = _text_model(model, config, tokens, -431.25, calls)
    text = torch.tensor([tokens])
    assert log_likelihood(stand_in_model, text) == pytest.approx(-431.25, abs=1e-3)
    total, past = 0.0, None
    for t in range(len(tokens) - 1):
        logits, past = stand_in_model(text[:, t:t + 1], past=past)
        total += torch.log_softmax(logits[0, -1], dim=-1)[tokens[t + 1]].item()
    assert total == pytest.approx(-431.25, abs=1e-3) and len(calls) == len(tokens)
    assert next(stand_in_model.parameters()).device.type == "cpu" and stand_in_model.config is config

    counted = []
    stand_in = _log_likelihood_stand_in(log_likelihood, lambda: _like_returned(torch.tensor(1.0), -300.5), counted,
                                        model=stand_in_model, text=text)
    assert stand_in.__name__ == "log_likelihood" and not hasattr(stand_in, "__wrapped__")
    for value in (stand_in(stand_in_model, text), stand_in(model=stand_in_model, text=text),
                  stand_in(stand_in_model, text=text.clone())):
        assert type(value) is torch.Tensor and value.item() == -300.5 and value < -300 and float(value) == -300.5
    with pytest.raises(TypeError, match="text"):
        stand_in(stand_in_model)
    with pytest.raises(TypeError, match="unexpected keyword"):
        stand_in(stand_in_model, text, temperature=1)
    # any other call is the submission's own: another model, part of the text, the arguments swapped
    assert stand_in(stand_in_model, text[:, :5]) == pytest.approx(log_likelihood(stand_in_model, text[:, :5]))
    assert stand_in(model, text) == pytest.approx(log_likelihood(model, text))
    with pytest.raises(TypeError, match="not callable"):
        stand_in(text, stand_in_model)
    assert len(counted) == 6
    assert type(_like_returned(1.5, -2.0)) is float and type(_like_returned(np.float32(1), -2.0)) is np.float32
    assert _like_returned(None, -2.0).dtype == torch.float64 and _like_returned(None, -2.0).dim() == 0


def test_graded_snippets_keep_the_course_proportions_and_vary_with_the_seed():
    from autograder.problems.p6.test_p6_likelihood import graded_snippets
    snippets = tuple(((i,), i < 100) for i in range(300))
    first = graded_snippets(snippets, np.random.default_rng(1), 90)
    assert len(first) == 90 and sum(label for _, label in first) == 30 and len(set(first)) == 90
    assert set(first) != set(graded_snippets(snippets, np.random.default_rng(2), 90))
    assert graded_snippets(snippets[:50], np.random.default_rng(1), 90) == list(snippets[:50])
