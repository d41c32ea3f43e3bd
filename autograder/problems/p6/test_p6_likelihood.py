"""P6 checks of log-likelihoods and the classifier built on them (parts p6d, p6e).

p6d: ``log_likelihood(model, text)`` on public texts (2 and 3 tokens, 100 random letters, an
English sentence, random token ids filling the model's context) and on texts drawn from the
run's seed (random letters of 3..400 characters, token-id sequences up to the context, long
passages, the course's strings when configured), each within LL_ATOL + LL_RTOL·|reference|
(0.1 nats + 1e-4 relative, autograder/problems/p6/checking.py). A sum missing one token's term, an
average, a misaligned shift or an extra first-token term is off by nats on some text.

p6e: ``classification(model, text)``.
- With a real checkpoint (``--model gpt2`` or a folder) and the course's snippets, Shakespeare
  and NeurIPS files configured: accuracy on SNIPPETS_GRADED (90) of the labelled snippets, drawn
  by the run's seed in the course's proportions (a snippet equal to a Shakespeare or NeurIPS
  string is English, False; the others random letters, True). Full points
  at ACCURACY_FULL (95 %) or more; below, the share of the way from always answering "English"
  (the majority class, 2/3 of the course's snippets) to 95 %.
- Otherwise (the tiny random model cannot tell texts apart, or no snippets): a fallback that
  checks only the logic, with course-scale numbers from the course's ranges with GPT-2 small
  (random letters −460…−417, English −228…−72): classification must return a bool and answer
  True for the random range and False for the English one. The text's log-likelihood reaches it
  either way a classifier can get it: the submission's log_likelihood is replaced by a stand-in
  that returns each value in the form the submission's own log_likelihood returns (a float, a
  numpy scalar, a 0-d tensor: ``.item()``, ``float()`` and comparisons work), callable by
  position or keyword; and the model passed is a stand-in under which the text's log-likelihood
  is exactly that value, so a classifier that computes it inline (rule: allowed, as the accuracy
  mode allows it) is judged the same way. Full points when it decides right; the row says that
  the accuracy check needs the course checkpoint and data. Feedback names a threshold in the
  wrong place, a comparison the wrong way round, or an answer that ignores the log-likelihood.
"""
import numpy as np
import pytest

from autograder.compare import (BOOL_FORMS, REAL_FORMS, BestEffortHint, CheckFailed, as_bool, as_real, check_each,
                                expect_close, feedback, is_half_precision, known_mistake)
from autograder.problems.p6.checking import LL_ATOL, LL_RTOL, describe_tokens, passed_on, reference_for

ACCURACY_FULL = 0.95
SNIPPETS_GRADED = 90  # course snippets classified per submission (drawn by its seed, the course's proportions)
RANDOM_RANGE = (-460.0, -417.0)  # log-likelihoods of the course's random strings under GPT-2 small
ENGLISH_RANGE = (-228.0, -72.0)  # of its Shakespeare and NeurIPS strings
LL_HINT = ("sum log p(text_t | text_<t) over t = 1..T-1: the logits at position t-1 predict token t; leave out "
           "the first token (nothing predicts it) and sum, do not average.")


@pytest.fixture(scope="module")
def reference(run_settings):
    return reference_for(run_settings)


LL_MISTAKES = {  # what each variant of p6_log_likelihood_variants means, as a hint
    "last_term_dropped": "that is the sum without the last term: sum over t = 1..T-1 (all T-1 terms), e.g. "
                         "logits[0, :-1] against text[0, 1:].",
    "first_term_dropped": "that is the sum without the term of t = 1 (the second token, predicted from the first): "
                          "start at t = 1, not 2.",
    "shifted": "shifted by one position: the logits at position t were scored against token t; they predict "
               "token t + 1, so compare logits[0, :-1] with text[0, 1:].",
    "first_token_included": "that includes an extra first-token term (the first token scored after <|endoftext|>): "
                            "leave the first token out, nothing in the text predicts it.",
    "raw_logits": "that is the sum of the raw logits at the targets: take log_softmax first, to get log-probabilities.",
    "negated": "that is the negative log-likelihood (the summed cross-entropy, a positive number): return "
               "the log-likelihood itself, sum log p, which is ≤ 0.",
    "bits": "that is the sum in bits (log base 2): GPT-2's log_softmax gives natural logs (nats); don't divide by "
            "log 2.",
    "float16": "that is the right sum computed in float16 (half precision, about 3 significant digits): compute "
               "the log-softmax and the sum in float32 or float64.",
}


def ll_hint(got: float, text, variants=None) -> str:
    """What a wrong log-likelihood most likely did: the hint of the known mistake it matches within
    the check's tolerance (variants: the clean process's values of each, when computed)."""
    terms = len(text.tokens) - 1
    if terms > 1 and abs(got - text.log_likelihood / terms) <= LL_ATOL + LL_RTOL * abs(text.log_likelihood / terms):
        return f"that is the average over the {terms} terms: " + LL_HINT
    exact = {"negated": -text.log_likelihood, "bits": text.log_likelihood / np.log(2.0)}  # of the right sum itself
    named = known_mistake(got, [(LL_MISTAKES[name], value) for name, value in {**exact, **(variants or {})}.items()
                                if name in LL_MISTAKES], rtol=LL_RTOL, atol=LL_ATOL)
    if named:
        return f"{named} {LL_HINT}"
    if is_half_precision(got):
        return f"{LL_MISTAKES['float16']} {LL_HINT}"
    if terms == 1:
        return "a 2-token text has exactly one term, log p(text_1 | text_0). " + LL_HINT
    if got < text.log_likelihood:
        return "more negative than the right sum: an extra term, or the terms of other tokens? " + LL_HINT
    return "less negative than the right sum: a missing term, or the terms of other tokens? " + LL_HINT


def _judge_text(text, entry, clean_process=None) -> str:
    """One log_likelihood answer within LL_ATOL + LL_RTOL·|reference|, or CheckFailed; when it is
    wrong, the clean process (when given) computes what known mistakes give there, to name it."""
    call = "log_likelihood(model, text)"
    instance = f"text {describe_tokens(text.text, text.tokens)}"
    value = as_real(passed_on(entry, call=call, instance=instance, expected=f"a real number ({REAL_FORMS})",
                              hint="return one number, e.g. .item() of a 0-d tensor."), call=call, instance=instance)
    if abs(value - text.log_likelihood) > LL_ATOL + LL_RTOL * abs(text.log_likelihood) and clean_process is not None:
        variants = clean_process.harness("p6_log_likelihood_variants", tokens=list(text.tokens))
    else:
        variants = None
    value = expect_close(value, text.log_likelihood, rtol=LL_RTOL, atol=LL_ATOL, call=call, instance=instance,
                         hint=BestEffortHint(lambda: ll_hint(value, text, variants), generic=LL_HINT))
    return f"{instance}: {value:.4f} (reference {text.log_likelihood:.4f})"


def check_log_likelihoods(student, texts, outcome, clean_process=None) -> None:
    """log_likelihood on every text ("N of M answers wrong. The first: …"); the clean process names
    the mistake of the first wrong answer only, the one whose feedback is shown."""
    answers = student.harness("p6_log_likelihood", texts=[list(t.tokens) for t in texts])
    notes = []

    def judge(item, first):
        notes.append(_judge_text(*item, clean_process=clean_process if first else None))
    check_each(zip(texts, answers), judge, count_errors=True, tell_first=True)
    outcome.note(f"All {len(texts)} log-likelihoods within {LL_ATOL:g} + {LL_RTOL:g}·|reference| nats:\n" + "\n".join(notes))


@pytest.mark.graded("p6d_public")
def test_log_likelihood_public(student, clean_process, reference, outcome):
    check_log_likelihoods(student, [t for t in reference.texts if t.public], outcome, clean_process)


@pytest.mark.graded("p6d_random")
def test_log_likelihood_random(student, clean_process, reference, rng, outcome):
    pool = [t for t in reference.texts if not t.public]
    random = [t for t in pool if t.kind == "random"]
    english = [t for t in pool if t.kind in ("shakespeare", "neurips")] or random
    chosen = [*pick(rng, random, 2), *pick(rng, [t for t in pool if t.kind == "tokens"], 1),
              *pick(rng, [t for t in pool if len(t.tokens) >= reference.config["n_ctx"] // 2], 1),
              *pick(rng, english, 2)]
    check_log_likelihoods(student, chosen, outcome, clean_process)


def pick(rng, items: list, size: int) -> list:
    """``size`` distinct items drawn by the run's seed."""
    return [items[i] for i in rng.choice(len(items), size=size, replace=False)]


def graded_snippets(snippets, rng, size: int) -> list:
    """``size`` of the labelled snippets, drawn by the run's seed in the course's proportions of
    random and English text (all of them when there are no more)."""
    if len(snippets) <= size:
        return list(snippets)
    random_ = [s for s in snippets if s[1]]
    english = [s for s in snippets if not s[1]]
    take = round(size * len(random_) / len(snippets))
    chosen = [random_[i] for i in rng.choice(len(random_), size=take, replace=False)]
    chosen += [english[i] for i in rng.choice(len(english), size=size - take, replace=False)]
    return chosen


def _accuracy(student, reference, rng, outcome) -> None:
    # A sample, not all 300: each classification runs GPT-2 small once (0.1-0.3 s on a CPU).
    snippets = graded_snippets(reference.snippets, rng, SNIPPETS_GRADED)
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


THRESHOLD_HINT = ("with GPT-2 small, random letters score about -460..-417 and English -228..-72: a threshold "
                  "between -415 and -230 separates them (return log_likelihood(model, text) < threshold).")


def _decision_hint(values: list[float], answers: list[bool]) -> str:
    """What the answers on course-scale values say about the classifier: a threshold in the wrong
    place, the comparison the wrong way round, or no single threshold."""
    ordered = [answer for _, answer in sorted(zip(values, answers))]  # by log-likelihood, lowest first
    if len(set(ordered)) == 1:
        side = "True (random letters)" if ordered[0] else "False (English)"
        return (f"you answered {side} for every value from {min(values):.0f} to {max(values):.0f}: your threshold "
                f"lies outside both ranges, or the answer does not depend on the log-likelihood. " + THRESHOLD_HINT)
    if ordered == sorted(ordered):  # False for low values, True for high ones
        return "your comparison is the wrong way round: random letters have the lower log-likelihood. " + THRESHOLD_HINT
    if ordered == sorted(ordered, reverse=True):  # True below a threshold, False above: it is in the wrong place
        pairs = sorted(zip(values, answers))
        below = max(v for v, a in pairs if a)
        above = min(v for v, a in pairs if not a)
        return f"your threshold lies between {below:.2f} and {above:.2f}, inside one of the ranges. " + THRESHOLD_HINT
    return "your answers do not follow one threshold on the log-likelihood. " + THRESHOLD_HINT


def _stubbed(student, reference, rng, outcome) -> None:
    """The fallback: classification's decisions on course-scale log-likelihoods (see the module
    docstring). A classifier that calls log_likelihood gets each value from a stand-in for it; one
    that computes the log-likelihood itself gets it from a stand-in model under which the text has
    exactly that log-likelihood (problems/p6/child_classifier.py); both are judged alike."""
    values = [*np.round(rng.uniform(*RANDOM_RANGE, size=3), 2), *RANDOM_RANGE,
              *np.round(rng.uniform(*ENGLISH_RANGE, size=3), 2), *ENGLISH_RANGE]
    values = [float(v) for v in values]
    text = next(t for t in reference.texts if t.id == "ll-random-letters")
    answers = student.harness("p6_classification_stubbed", values=values, text=list(text.tokens))
    decided, inline = [], 0
    for value, entry in zip(values, answers):
        call = f"classification(model, text) on a text whose log-likelihood is {value:.2f}"
        answer = as_bool(passed_on(entry["answer"], call=call, expected=f"a bool ({BOOL_FORMS})"), call=call)
        if entry["calls"] < 1 and entry["model_calls"] < 1:
            raise CheckFailed(feedback(call=call, got=f"{answer!r} without calling log_likelihood or the model",
                                       expected="a threshold on the text's log-likelihood",
                                       hint="call log_likelihood(model, text) from submission.likelihood (or compute "
                                            "the log-likelihood from model(text)'s logits) and compare it with a "
                                            "threshold."))
        inline += entry["calls"] < 1
        decided.append(answer)
    wrong = [(v, a) for v, a in zip(values, decided) if a is not (v <= RANDOM_RANGE[1])]
    if wrong:
        value, answer = wrong[0]
        raise CheckFailed(feedback(
            call=f"classification(model, text) on a text whose log-likelihood is {value:.2f}", got=repr(answer),
            expected=f"{not answer!r} ({len(wrong)} of {len(values)} values answered wrongly)",
            hint=_decision_hint(values, decided)))
    how = ("computing the log-likelihood itself (judged with a model under which the text has each value)" if inline
           else "calling log_likelihood (replaced by a stand-in returning each value)")
    outcome.note("Fallback check (the accuracy on the course's snippets needs the course checkpoint, --model gpt2, and "
                 "the course's snippet, Shakespeare and NeurIPS files): classification returns a bool from a threshold "
                 f"on the log-likelihood that separates course-scale values ({len(values)} values checked, {how}).")


@pytest.mark.graded("p6e_classification")
def test_classification(student, reference, rng, outcome):
    if reference.tiny or not reference.snippets:
        _stubbed(student, reference, rng, outcome)
    else:
        _accuracy(student, reference, rng, outcome)
