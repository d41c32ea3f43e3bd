"""P6 checks of sample() (part p6c), judged statistically, never by matching seeded text.

- p6c_form: sample(model, start_text, config, length, temperature=T) returns a LongTensor
  (1, T0 + length) that starts with start_text, ids in [0, V); public and seeded cases.
- p6c_support: every token drawn in seeded runs of SUPPORT_LENGTH steps is among the k most
  likely at its step. The student's sequences are replayed through the model, without a cache,
  in a fresh child that never imports student code (``clean_process``), so the verdict cannot
  be influenced by the submission. A token within TIE_EPS = 1e-2 of the k-th logit counts as
  inside (the cache-free replay, or another device, rounds differently).
- p6c_distribution_public / _random: DRAWS calls of sample(..., length=1) on one prompt, at
  temperature None (public) or one T below and one above 1 from the seeded pools; the counts of
  the next token are tested against the reference distribution softmax(top-k logits / T) from
  the cache with a G-test whose threshold comes from Agrawal's finite-sample bound
  (compare.multinomial_fit_test): a correct sampler fails with probability ≤ 1e-6 per check
  (1e-6 / 2 per temperature in the random check), for any number of draws and any distribution,
  without asymptotic approximations. Cells expected fewer than 10 times, and top-k ties, are
  pooled; a draw outside the top-k (and its ties) fails outright.
Power, on the tiny model: greedy decoding and skipping top-k fail at any prompt; ignoring T, or
multiplying by it, moves the next-token distribution by at least twice the pass band in relative
entropy at every pool prompt and low temperature (≤ 0.7; the random check always draws one), at
DRAWS draws (tests/test_p6_units.py checks that margin, tests/test_p6_mutants.py each mutant).
A correct sampler that draws differently (torch.distributions.Categorical, numpy, Gumbel-max,
another device) keeps full marks: only its distribution is judged.
"""
import numpy as np
import pytest

from autograder.compare import CheckFailed, FALSE_FAIL, expect_fit, feedback, multinomial_fit_test
from autograder.p6.checking import TIE_EPS, describe_tokens, reference_for, sequence
from autograder.p6.instances import HIGH_TEMPERATURES, LOW_TEMPERATURES

DRAWS = 1200  # sample() calls per temperature: ~1 s on the tiny model, ~15 s for GPT-2 small on a CPU
SUPPORT_LENGTH = 30  # tokens per sequence in the support check
DIST_HINT = ("each step draws from softmax(top_k_logits(logits, config.top_k) / T) (T None: no scaling), e.g. with "
             "torch.multinomial(probs, 1): not the argmax, not the unfiltered logits, and divide by T, don't multiply.")


@pytest.fixture(scope="module")
def reference(run_settings):
    return reference_for(run_settings)


def _seed(rng) -> int:
    return int(rng.integers(2**31))


def _pool(reference, rng, count: int):
    pool = [p for p in reference.prompts if not p.public]
    return [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]


def _call(length, temperature) -> str:
    return f"sample(model, start_text, config, {length}, temperature={temperature!r})"


def run_samples(student, reference, cases, rng) -> list[np.ndarray]:
    """cases: (prompt, length, temperature); the judged sequences, one per case."""
    answers = student.harness("p6_sample", rng_seed=_seed(rng), cases=[
        {"prompt": list(p.tokens), "length": n, "temperature": t} for p, n, t in cases])
    return [sequence(entry, prompt_tokens=p.tokens, length=n, vocab_size=reference.config["vocab_size"],
                     call=_call(n, t), instance=f"start_text {describe_tokens(p.text, p.tokens)}")
            for (p, n, t), entry in zip(cases, answers)]


@pytest.mark.graded("p6c_form")
def test_sample_form(student, reference, rng, outcome):
    public = {p.id: p for p in reference.prompts if p.public}
    cases = [(public["prompt-letters"], 1, None), (public["prompt-english"], 8, 0.7), (public["prompt-one-token"], 5, 1.5),
             (_pool(reference, rng, 1)[0], int(rng.integers(2, 13)), float(rng.choice(LOW_TEMPERATURES + HIGH_TEMPERATURES)))]
    run_samples(student, reference, cases, rng)
    outcome.note(f"{len(cases)} calls returned LongTensors (1, T0 + length) starting with start_text.")


@pytest.mark.graded("p6c_support")
def test_sample_support(student, clean_process, reference, rng, outcome):
    prompts = [reference.prompt("prompt-one-token"), *_pool(reference, rng, 2)]
    temperatures = [None, float(rng.choice(HIGH_TEMPERATURES)), float(rng.choice(LOW_TEMPERATURES))]
    cases = [(p, SUPPORT_LENGTH, t) for p, t in zip(prompts, temperatures)]
    sequences = run_samples(student, reference, cases, rng)
    replay = clean_process.harness("p6_replay_support", sequences=[s.tolist() for s in sequences],
                                   starts=[len(p.tokens) for p, _, _ in cases])
    k = reference.config["top_k"]
    for (prompt, length, temperature), ids, steps in zip(cases, sequences, replay):
        outside = np.flatnonzero(steps["logit"] < steps["kth"] - TIE_EPS)
        if outside.size:
            step = int(outside[0])
            token = int(ids[len(prompt.tokens) + step])
            raise CheckFailed(feedback(
                call=_call(length, temperature), instance=f"start_text {describe_tokens(prompt.text, prompt.tokens)}",
                got=f"{outside.size} of {length} tokens outside the top {k}; the first, at step {step + 1}, is token "
                    f"{token}, ranked {int(steps['rank'][step]) + 1} (logit {steps['logit'][step]:.4f}, the {k}-th "
                    f"largest is {steps['kth'][step]:.4f})",
                expected=f"every token among the {k} most likely at its step (within {TIE_EPS:g} of the {k}-th logit)",
                hint="apply top_k_logits(logits, config.top_k) at every step before the softmax, and feed each drawn "
                     "token back with the cache (past=new_past)."))
    outcome.note(f"All {len(cases) * SUPPORT_LENGTH} drawn tokens lie in the top {k} at their step "
                 f"(replayed through the model in a separate clean process).")


def check_distribution(student, reference, prompt, temperature, rng, outcome, *, false_fail: float) -> None:
    call = _call(1, temperature)
    instance = f"start_text {describe_tokens(prompt.text, prompt.tokens)}, {DRAWS} calls"
    answer = student.harness("p6_sample_next_tokens", prompt=list(prompt.tokens), temperature=temperature,
                             draws=DRAWS, rng_seed=_seed(rng))
    if "bad" in answer:
        bad = answer["bad"]
        raise CheckFailed(feedback(call=call, instance=f"{instance}, call {bad['draw'] + 1}",
                                   got=f"{bad['got']}, {bad['type']}: {bad['why']}",
                                   expected=f"a LongTensor of shape (1, {len(prompt.tokens) + 1}) starting with start_text"))
    tokens = answer["tokens"]
    if type(tokens) is not np.ndarray or tokens.shape != (DRAWS,) or tokens.dtype.kind not in "iu":
        raise CheckFailed(feedback(call=call, instance=instance, got="a malformed list of tokens", expected=f"{DRAWS} ids"))
    ties = prompt.ties(TIE_EPS)
    outside_ties = np.setdiff1d(ties, prompt.top_ids)
    ids = np.concatenate([prompt.top_ids, outside_ties])
    probabilities = np.concatenate([prompt.distribution(temperature), np.zeros(outside_ties.size)])
    stray = np.setdiff1d(tokens, ids)
    if stray.size:
        count = int(np.isin(tokens, stray).sum())
        raise CheckFailed(feedback(call=call, instance=instance, hint=DIST_HINT,
                                   got=f"{count} draws outside the top {reference.config['top_k']}, e.g. token {int(stray[0])}",
                                   expected=f"only the {reference.config['top_k']} most likely next tokens"))
    counts = np.array([np.count_nonzero(tokens == i) for i in ids])
    test = multinomial_fit_test(counts, probabilities, labels=[f"token {i}" for i in ids],
                                pool=np.isin(ids, ties), false_fail=false_fail)
    expect_fit(test, call=call, instance=f"{instance}, expected softmax(top-k logits / {temperature or 1:g})",
               quantity="the next token", hint=DIST_HINT)
    outcome.note(f"T={temperature!r}, {instance}: {test.summary()}")


@pytest.mark.graded("p6c_distribution_public")
def test_sample_distribution_public(student, reference, rng, outcome):
    check_distribution(student, reference, reference.prompt("prompt-one-token"), None, rng, outcome, false_fail=FALSE_FAIL)


@pytest.mark.graded("p6c_distribution_random")
def test_sample_distribution_random(student, reference, rng, outcome):
    prompt = _pool(reference, rng, 1)[0]
    for temperature in (float(rng.choice(LOW_TEMPERATURES)), float(rng.choice(HIGH_TEMPERATURES))):
        check_distribution(student, reference, prompt, temperature, rng, outcome, false_fail=FALSE_FAIL / 2)
