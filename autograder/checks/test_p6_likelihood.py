"""P6 checks of log-likelihoods and the classifier built on them (parts p6d, p6e).

p6d: ``log_likelihood(model, text)`` on public texts (2 and 3 tokens, 100 random letters, an
English sentence, random token ids filling the model's context) and on texts drawn from the
run's seed (random letters of 3..400 characters, token-id sequences up to the context, long
passages, the course's strings when configured), each within LL_ATOL + LL_RTOL·|reference|
(0.1 nats + 1e-4 relative, autograder/p6/checking.py). A sum missing one token's term, an
average, a misaligned shift or an extra first-token term is off by nats on some text.

p6e: ``classification(model, text)``.
- With a real checkpoint (``--model gpt2`` or a folder) and the course's snippets, Shakespeare
  and NeurIPS files configured: accuracy on the labelled snippets (a snippet equal to a
  Shakespeare or NeurIPS string is English, False; the others random letters, True). Full points
  at ACCURACY_FULL (95 %) or more; below, the share of the way from always answering "English"
  (the majority class, 2/3 of the course's snippets) to 95 %.
- Otherwise (the tiny random model cannot tell texts apart, or no snippets): a fallback that
  checks only the logic, with course-scale numbers: log_likelihood is replaced by a stub
  returning values from the course's ranges with GPT-2 small (random letters −460…−417,
  English −228…−72), and classification must return a bool, call log_likelihood, and answer
  True for the random range and False for the English one. Full points when it does; the row
  says that the accuracy check needs the course checkpoint and data.
"""
import numpy as np
import pytest

from autograder.compare import BOOL_FORMS, REAL_FORMS, CheckFailed, as_bool, as_real, expect_close, feedback
from autograder.p6.checking import LL_ATOL, LL_RTOL, describe_tokens, passed_on, reference_for

ACCURACY_FULL = 0.95
RANDOM_RANGE = (-460.0, -417.0)  # log-likelihoods of the course's random strings under GPT-2 small
ENGLISH_RANGE = (-228.0, -72.0)  # of its Shakespeare and NeurIPS strings
LL_HINT = ("sum log p(text_t | text_<t) over t = 1..T-1: the logits at position t-1 predict token t; leave out "
           "the first token (nothing predicts it) and sum, do not average.")


@pytest.fixture(scope="module")
def reference(run_settings):
    return reference_for(run_settings)


def ll_hint(got: float, text) -> str:
    """What a wrong log-likelihood most likely did, from how it relates to the right one."""
    terms = len(text.tokens) - 1
    if terms > 1 and abs(got - text.log_likelihood / terms) <= LL_ATOL + LL_RTOL * abs(text.log_likelihood / terms):
        return f"that is the average over the {terms} terms: " + LL_HINT
    if terms == 1:
        return "a 2-token text has exactly one term, log p(text_1 | text_0). " + LL_HINT
    if got < text.log_likelihood:
        return "more negative than the right sum: an extra term (the first token's?) or a misaligned shift. " + LL_HINT
    return "less negative than the right sum: a missing term, or a misaligned shift. " + LL_HINT


def check_log_likelihoods(student, texts, outcome) -> None:
    answers = student.harness("p6_log_likelihood", texts=[list(t.tokens) for t in texts])
    notes = []
    for text, entry in zip(texts, answers):
        call = "log_likelihood(model, text)"
        instance = f"text {describe_tokens(text.text, text.tokens)}"
        value = as_real(passed_on(entry, call=call, instance=instance, expected=f"a real number ({REAL_FORMS})",
                                  hint="return one number, e.g. .item() of a 0-d tensor."), call=call, instance=instance)
        value = expect_close(value, text.log_likelihood, rtol=LL_RTOL, atol=LL_ATOL, call=call, instance=instance,
                             hint=ll_hint(value, text))
        notes.append(f"{instance}: {value:.4f} (reference {text.log_likelihood:.4f})")
    outcome.note(f"All {len(texts)} log-likelihoods within {LL_ATOL:g} + {LL_RTOL:g}·|reference| nats:\n" + "\n".join(notes))


@pytest.mark.graded("p6d_public")
def test_log_likelihood_public(student, reference, outcome):
    check_log_likelihoods(student, [t for t in reference.texts if t.public], outcome)


@pytest.mark.graded("p6d_random")
def test_log_likelihood_random(student, reference, rng, outcome):
    pool = [t for t in reference.texts if not t.public]
    random = [t for t in pool if t.kind == "random"]
    english = [t for t in pool if t.kind in ("shakespeare", "neurips")] or random
    chosen = [*pick(rng, random, 2), *pick(rng, [t for t in pool if t.kind == "tokens"], 1),
              *pick(rng, [t for t in pool if len(t.tokens) >= reference.config["n_ctx"] // 2], 1),
              *pick(rng, english, 2)]
    check_log_likelihoods(student, chosen, outcome)


def pick(rng, items: list, size: int) -> list:
    """``size`` distinct items drawn by the run's seed."""
    return [items[i] for i in rng.choice(len(items), size=size, replace=False)]


def _accuracy(student, reference, outcome) -> None:
    snippets = reference.snippets
    answers = student.harness("p6_classification", texts=[list(tokens) for tokens, _ in snippets])
    right = 0
    for index, ((_, label), entry) in enumerate(zip(snippets, answers)):
        call, instance = "classification(model, text)", f"snippet {index}"
        answer = as_bool(passed_on(entry, call=call, instance=instance, expected=f"a bool ({BOOL_FORMS})"),
                         call=call, instance=instance)
        right += answer == label
    accuracy = right / len(snippets)
    share_random = float(np.mean([label for _, label in snippets]))
    majority = max(share_random, 1.0 - share_random)
    outcome.fraction = float(np.clip((accuracy - majority) / (ACCURACY_FULL - majority), 0.0, 1.0))
    outcome.note(f"classification was right on {right} of {len(snippets)} course snippets ({accuracy:.1%}); full points "
                 f"from {ACCURACY_FULL:.0%}, none at or below {majority:.1%} (always answering the majority class).")
    if outcome.fraction == 0.0:
        raise CheckFailed(feedback(call="classification(model, text)", instance="the course's labelled snippets",
                                   got=f"{accuracy:.1%} right", expected=f"at least {ACCURACY_FULL:.0%} for full points",
                                   hint="with GPT-2 small, random letters score about -460..-417 and English -228..-72: "
                                        "a threshold between -415 and -230 separates them."))


def _stubbed(student, reference, rng, outcome) -> None:
    values = [*np.round(rng.uniform(*RANDOM_RANGE, size=3), 2), *RANDOM_RANGE,
              *np.round(rng.uniform(*ENGLISH_RANGE, size=3), 2), *ENGLISH_RANGE]
    text = next(t for t in reference.texts if t.id == "ll-random-letters")
    answers = student.harness("p6_classification_stubbed", values=[float(v) for v in values], text=list(text.tokens))
    for value, entry in zip(values, answers):
        call = f"classification(model, text) with log_likelihood(model, text) returning {value:.2f}"
        answer = as_bool(passed_on(entry["answer"], call=call, expected=f"a bool ({BOOL_FORMS})"), call=call)
        if entry["calls"] < 1:
            raise CheckFailed(feedback(call=call, got=f"{answer!r} without calling log_likelihood",
                                       expected="a threshold on log_likelihood(model, text)",
                                       hint="call log_likelihood from submission.likelihood (imported as the course's "
                                            "starter code does) and compare it with a threshold."))
        expected = bool(value <= RANDOM_RANGE[1])
        if answer is not expected:
            raise CheckFailed(feedback(call=call, got=repr(answer), expected=f"{expected!r}",
                                       hint="with GPT-2 small, random letters score about -460..-417 and English "
                                            "-228..-72: a threshold between -415 and -230 separates them."))
    outcome.note("Fallback check (the accuracy on the course's snippets needs the course checkpoint, --model gpt2, and "
                 "the course's snippet, Shakespeare and NeurIPS files): classification returns a bool from a threshold "
                 f"on log_likelihood that separates course-scale values ({len(values)} values checked).")


@pytest.mark.graded("p6e_classification")
def test_classification(student, reference, rng, outcome):
    if reference.tiny or not reference.snippets:
        _stubbed(student, reference, rng, outcome)
    else:
        _accuracy(student, reference, outcome)
