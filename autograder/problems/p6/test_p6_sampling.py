"""P6 checks of sample() and top_k_logits (part p6c), judged statistically or exactly, never by
matching seeded text.

- p6c_form: sample(model, start_text, config, length, temperature=T) returns a LongTensor
  (1, T0 + length) that starts with start_text, ids in [0, V); public and seeded cases.
- p6c_top_k: top_k_logits(logits, k) is a deterministic function: judged exactly on crafted
  (1, V) logits (a unique k-th value; k = 1, 5, config.top_k; four tokens sharing the k-th value,
  all kept; a row already half -1e10; k = V; k = 0, unchanged as in the course's code). Kept
  entries come back unchanged, masked ones ≤ -1e9 (-1e10 in the course). Feedback names k − 1
  or k + 1 tokens kept, dropped ties and k = 0. The filter is given in the starter code, so the
  row also needs one call of sample() to run without an error (the template gets nothing for it).
- p6c_support: every token drawn in seeded runs of SUPPORT_LENGTH steps is among the k most
  likely at its step. The student's sequences are replayed through the model, without a cache,
  in a fresh child that never imports student code (``clean_process``), so the verdict cannot
  be influenced by the submission. A token within TIE_EPS = 1e-2 of the k-th logit counts as
  inside (the cache-free replay, or another device, rounds differently).
- p6c_distribution_public / _random: DRAWS calls of sample(..., length=1) on one prompt, at
  temperature None (public) or one T below 1 (the seeded pool) and one well above it
  (FLAT_TEMPERATURES, 4..6, where the top-k is flat enough that its k-th token is drawn tens of
  times); the counts of the next token are tested against the reference distribution
  softmax(top-k logits / T) from the cache with a G-test whose threshold comes from Agrawal's
  finite-sample bound (statistical.multinomial_fit_test), and the k-th token's count against its
  probability by Chernoff's bound (a sampler keeping k − 1 tokens never draws it; the random
  check picks, of four pool prompts, the one where the k-th token is likeliest). A correct
  sampler fails with probability ≤ 1e-6 per check (split evenly over temperatures and the two
  tests), for any number of draws and any distribution, without asymptotic approximations.
  Cells expected fewer than 10 times, and top-k ties, are pooled; a draw outside the top-k (and
  its ties) fails outright.
- p6c_second_step: SECOND_DRAWS calls of sample(..., length=2) at a low T: the first token as
  above, and the second token, for every first token drawn at least MIN_GROUP times, against
  softmax(top-k logits after prompt + first token / T) computed in a clean child (one forward of
  the prompt and one batched forward of those first tokens), by one pooled G-test
  (statistical.pooled_fit_test, Agrawal's bound for independent groups). A sampler that applies the
  temperature at the first step only, or multiplies by it later, fails it.
Power, on the tiny model: greedy decoding and skipping top-k fail at any prompt; ignoring T, or
multiplying by it, moves the next-token distribution by at least twice the pass band in relative
entropy at every pool prompt and low temperature (≤ 0.7; the random check always draws one), at
DRAWS draws; forgetting T after the first step moves the second token's pooled statistic to at
least twice its pass band at every pool prompt and low temperature (tests/test_p6_units.py checks
both margins, tests/mutants each mutant). Feedback names the mistake the draws match
(the same test passes against its distribution): argmax, T ignored, T multiplied, T at the first
step only, k − 1 tokens kept. A correct sampler that draws differently
(torch.distributions.Categorical, numpy, Gumbel-max, another device) keeps full marks: only its
distribution is judged. Costs at GPT-2 small's size: the repeated calls reuse one prompt (and,
for the second step, a few first tokens), which the course model's memo serves after the first.
"""
import numpy as np
import pytest

from autograder.child.codec import TensorValue, describe
from autograder.compare import CheckFailed, check_each, feedback, short
from autograder.processes import StudentCodeError
from autograder.statistical import FALSE_FAIL, binomial_too_few, expect_fit, multinomial_fit_test, pooled_fit_test
from autograder.problems.p6.checking import TIE_EPS, describe_tokens, passed_on, reference_for, sequence
from autograder.problems.p6.instances import HIGH_TEMPERATURES, LOW_TEMPERATURES
from autograder.problems.p6.reference import MASK_LEVEL, NEAR, Prompt

DRAWS = 1200  # sample() calls per temperature: ~1 s on the tiny model, ~15 s for GPT-2 small on a CPU
SECOND_DRAWS = 1200  # sample(..., length=2) calls in the second-step check
MIN_GROUP = 30  # first tokens drawn at least this often have their second token tested
# The random distribution check's T > 1: flat enough that the k-th token carries mass a sampler
# keeping k − 1 tokens visibly misses (the cached pools' 1.5..2 leave it under 1 % on the tiny model).
FLAT_TEMPERATURES = (4.0, 5.0, 6.0)
SUPPORT_LENGTH = 30  # tokens per sequence in the support check
DIST_HINT = ("Each step draws from softmax(top_k_logits(logits, config.top_k) / T) (T None: no scaling), e.g. with "
             "torch.multinomial(probs, 1): not the argmax, not the unfiltered logits, and divide by T, don't multiply.")


@pytest.fixture(scope="module")
def reference(run_settings):
    return reference_for(run_settings)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st, 40th."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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
                    f"{token}, ranked {int(steps['rank'][step]) + 1} (logit {steps['logit'][step]:.4f}, the {ordinal(k)} "
                    f"largest is {steps['kth'][step]:.4f})",
                expected=f"every token among the {k} most likely at its step (within {TIE_EPS:g} of the {ordinal(k)} logit)",
                hint=("every token outside is the (k + 1)-th most likely: top_k_logits keeps k + 1 tokens. "
                      if np.all(steps["rank"][outside] == k) else "")
                + "apply top_k_logits(logits, config.top_k) at every step before the softmax, and feed each drawn "
                  "token back with the cache (past=new_past)."))
    outcome.note(f"All {len(cases) * SUPPORT_LENGTH} drawn tokens lie in the top {k} at their step "
                 f"(replayed through the model in a separate clean process).")


def draw_tokens(student, prompt, temperature, rng, *, draws: int, length: int) -> np.ndarray:
    """``draws`` calls of sample(..., length) on one prompt: the drawn tokens, (draws,) or (draws, length)."""
    call = _call(length, temperature)
    instance = f"start_text {describe_tokens(prompt.text, prompt.tokens)}, {draws} calls"
    answer = student.harness("p6_sample_next_tokens", prompt=list(prompt.tokens), temperature=temperature,
                             draws=draws, rng_seed=_seed(rng), length=length)
    if type(answer) is dict and type(answer.get("bad")) is dict:
        bad = answer["bad"]
        raise CheckFailed(feedback(call=call, instance=f"{instance}, call {bad['draw'] + 1}",
                                   got=f"{bad['got']}, {bad['type']}: {bad['why']}",
                                   expected=f"a LongTensor of shape (1, {len(prompt.tokens) + length}) starting with "
                                            f"start_text"))
    tokens = answer.get("tokens") if type(answer) is dict else None
    shape = (draws,) if length == 1 else (draws, length)
    if type(tokens) is not np.ndarray or tokens.shape != shape or tokens.dtype.kind not in "iu":
        raise CheckFailed(feedback(call=call, instance=instance, got="a malformed list of tokens",
                                   expected=f"{draws * length} ids"))
    return tokens


def _cells(prompt, temperature):
    """(ids, probabilities, pool) of the next-token distribution softmax(top-k logits / T): the top-k
    tokens, then the tokens just outside it within TIE_EPS of the k-th logit (probability 0 here,
    pooled with the ties: another device's top-k may keep them instead)."""
    ties = prompt.ties(TIE_EPS)
    outside_ties = np.setdiff1d(ties, prompt.top_ids)
    ids = np.concatenate([prompt.top_ids, outside_ties])
    probabilities = np.concatenate([prompt.distribution(temperature), np.zeros(outside_ties.size)])
    return ids, probabilities, np.isin(ids, ties)


def fit(tokens, prompt, temperature, *, false_fail: float):
    """The G-test of drawn tokens against softmax(top-k logits / T) (None when a token falls
    outside the top-k and its ties: see strays)."""
    ids, probabilities, pool = _cells(prompt, temperature)
    if np.setdiff1d(tokens, ids).size:
        return None
    counts = np.array([np.count_nonzero(tokens == i) for i in ids])
    return multinomial_fit_test(counts, probabilities, labels=[f"token {i}" for i in ids], pool=pool,
                                false_fail=false_fail)


LATER_STEP_HINT = ("or the model saw another context at this step: feed it only the new token with the cache "
                   "(model(new_token, past=past), then keep the new past), or the whole text without a cache; the "
                   "whole text again with the cache, or a cache not updated, scores the wrong context. ")


def strays(tokens, prompt, *, k: int, call: str, instance: str, later_step: bool = False) -> None:
    """Fail when a drawn token lies outside the top-k and its ties (later_step: a token after the
    first new one, where the context the model saw may be the cause too)."""
    ids, _, _ = _cells(prompt, None)
    stray = np.setdiff1d(tokens, ids)
    if stray.size:
        count = int(np.isin(tokens, stray).sum())
        raise CheckFailed(feedback(call=call, instance=instance,
                                   got=f"{count} draws outside the top {k}, e.g. token {int(stray[0])}",
                                   expected=f"only the {k} most likely tokens (and ties within {TIE_EPS:g} of the k-th)",
                                   hint="top_k_logits was not applied at this step, or it keeps more than k tokens "
                                        "(k + 1?)" + (", " + LATER_STEP_HINT if later_step else ". ") + DIST_HINT))


def kth_mass(prompt, temperature) -> float:
    """The probability of the k-th most likely token at temperature T: what a sampler that keeps
    only k − 1 tokens never draws."""
    return float(prompt.distribution(temperature)[-1])


def check_kth_token(tokens, prompt, temperature, *, k: int, false_fail: float, call: str, instance: str) -> str:
    """Fail when the k-th most likely token is drawn too rarely: a sampler that keeps k − 1 tokens
    never draws it. The draws counted are those of the k-th token and of the tokens just outside
    the top-k within TIE_EPS of it (another device's top-k may keep one of those instead); a
    correct sampler draws one of them with probability ≥ the k-th token's less a device margin
    (a logit moved by TIE_EPS moves it by at most a factor e^(±2·TIE_EPS/T)). Chernoff's bound on
    the binomial's lower tail sets the verdict, so a correct sampler fails with probability ≤
    false_fail. Returns a note."""
    outside_ties = np.setdiff1d(prompt.ties(TIE_EPS), prompt.top_ids)
    counted = np.concatenate([prompt.top_ids[-1:], outside_ties])
    mass = kth_mass(prompt, temperature) * np.exp(-2 * TIE_EPS / (temperature or 1.0))
    count = int(np.isin(tokens, counted).sum())
    if binomial_too_few(count, tokens.size, mass, false_fail=false_fail):
        raise CheckFailed(feedback(
            call=call, instance=instance,
            got=f"the {ordinal(k)} most likely token ({int(prompt.top_ids[-1])}) drawn {count} times",
            expected=f"about {tokens.size * mass:.1f} draws (probability {mass:.2%} each; so few happen to a correct "
                     f"sampler with probability ≤ {false_fail:.0e}, by Chernoff's bound)",
            hint=f"top_k_logits seems to keep k − 1 = {k - 1} tokens, masking the k-th largest: keep every logit ≥ the "
                 f"k-th largest (values[:, -1] of torch.topk(logits, k)). " + DIST_HINT))
    power = "would" if binomial_too_few(0, tokens.size, mass, false_fail=false_fail) else "could not"
    return (f"the {ordinal(k)} token drawn {count} times, expected {tokens.size * mass:.1f} (a sampler keeping k − 1 tokens "
            f"{power} be caught here)")


def distribution_hint(tokens, prompt, temperature, *, false_fail: float, step: str = "") -> str:
    """Which known mistake the draws match (the same G-test passes against its distribution)."""
    if np.all(tokens == prompt.top_ids[0]):
        return ("every draw was the most likely token: the argmax, not a draw from the softmax (use "
                "torch.multinomial(probs, 1)). " + DIST_HINT)
    if temperature is not None and temperature != 1.0:
        for wrong, named in ((None, f"the draws match temperature 1: the temperature was ignored{step}."),
                             (1.0 / temperature, f"the draws match logits × T instead of logits / T: the temperature "
                                                 f"was multiplied{step}.")):
            test = fit(tokens, prompt, wrong, false_fail=false_fail)
            if test is not None and test.passed:
                return f"{named} {DIST_HINT}"
    return DIST_HINT


def check_distribution(student, reference, prompt, temperature, rng, outcome, *, false_fail: float) -> None:
    """DRAWS draws of the next token against softmax(top-k logits / T): no token outside the top-k,
    the k-th token drawn as often as it should be (false_fail / 2), and a G-test (false_fail / 2)."""
    k = reference.config["top_k"]
    call = _call(1, temperature)
    instance = f"start_text {describe_tokens(prompt.text, prompt.tokens)}, {DRAWS} calls"
    tokens = draw_tokens(student, prompt, temperature, rng, draws=DRAWS, length=1)
    strays(tokens, prompt, k=k, call=call, instance=instance)
    test = fit(tokens, prompt, temperature, false_fail=false_fail / 2)
    expect_fit(test, call=call, instance=f"{instance}, expected softmax(top-k logits / {temperature or 1:g})",
               quantity="the next token", hint=distribution_hint(tokens, prompt, temperature, false_fail=false_fail / 2))
    kth = check_kth_token(tokens, prompt, temperature, k=k, false_fail=false_fail / 2, call=call, instance=instance)
    outcome.note(f"T={temperature!r}, {instance}: {test.summary()}; {kth}.")


@pytest.mark.graded("p6c_distribution_public")
def test_sample_distribution_public(student, reference, rng, outcome):
    check_distribution(student, reference, reference.prompt("prompt-one-token"), None, rng, outcome, false_fail=FALSE_FAIL)


@pytest.mark.graded("p6c_distribution_random")
def test_sample_distribution_random(student, reference, rng, outcome):
    low, high = float(rng.choice(LOW_TEMPERATURES)), float(rng.choice(FLAT_TEMPERATURES))
    # Of four pool prompts, the one whose k-th token is most likely at the high temperature.
    prompt = max(_pool(reference, rng, 4), key=lambda p: kth_mass(p, high))
    for temperature in (low, high):
        check_distribution(student, reference, prompt, temperature, rng, outcome, false_fail=FALSE_FAIL / 2)


# -- a later step: the second token given the first ------------------------------------------------
@pytest.mark.graded("p6c_second_step")
def test_sample_second_step(student, clean_process, reference, rng, outcome):
    """SECOND_DRAWS calls of sample(..., length=2) at a low temperature: the first tokens against the
    prompt's distribution (false_fail / 2), and the second tokens, grouped by the first tokens drawn
    at least MIN_GROUP times, against softmax(top-k logits after prompt + [t] / T) computed in a clean
    process, by one pooled G-test (false_fail / 2)."""
    k = reference.config["top_k"]
    prompt = _pool(reference, rng, 1)[0]
    temperature = float(rng.choice(LOW_TEMPERATURES))
    call = _call(2, temperature)
    instance = f"start_text {describe_tokens(prompt.text, prompt.tokens)}, {SECOND_DRAWS} calls"
    tokens = draw_tokens(student, prompt, temperature, rng, draws=SECOND_DRAWS, length=2)
    strays(tokens[:, 0], prompt, k=k, call=call, instance=f"{instance}, the first new token")
    first = fit(tokens[:, 0], prompt, temperature, false_fail=FALSE_FAIL / 2)
    expect_fit(first, call=call, instance=f"{instance}, expected softmax(top-k logits / {temperature:g})",
               quantity="the first new token",
               hint=distribution_hint(tokens[:, 0], prompt, temperature, false_fail=FALSE_FAIL / 2))
    firsts, counts = np.unique(tokens[:, 0], return_counts=True)
    chosen = [int(t) for t, c in zip(firsts, counts) if c >= MIN_GROUP]
    rows = clean_process.harness("p6_second_step_logits", prompt=list(prompt.tokens), first_tokens=chosen, near=NEAR)
    after = [Prompt(f"after-{t}", prompt.kind, False, None, (*prompt.tokens, t),
                    *(np.asarray(row[name]) for name in ("top_ids", "top_logits", "near_ids", "near_logits")))
             for t, row in zip(chosen, rows)]
    groups = [(state, tokens[tokens[:, 0] == t, 1]) for t, state in zip(chosen, after)]
    for (state, seconds), t in zip(groups, chosen):
        strays(seconds, state, k=k, call=call, instance=f"{instance}, the second new token after token {t}",
               later_step=True)

    def pooled(wrong):
        return pooled_fit_test([fit(seconds, state, wrong, false_fail=FALSE_FAIL / 2) for state, seconds in groups],
                               false_fail=FALSE_FAIL / 2)
    second = pooled(temperature)
    if not second.passed:
        worst = max(second.groups, key=lambda g: g.draws * g.divergence)
        hint = DIST_HINT
        for wrong, named in ((None, "the second token matches temperature 1 while the first matches T: the temperature "
                                    "was applied at the first step only. Pass it to temperature_scale at every step."),
                             (1.0 / temperature, "the second token matches logits × T: the temperature was multiplied "
                                                 "at later steps.")):
            if pooled(wrong).passed:
                hint = f"{named} {DIST_HINT}"
                break
        raise CheckFailed(feedback(
            call=call, instance=f"{instance}; the second new token given each first token drawn ≥ {MIN_GROUP} times "
                                f"({len(groups)} of them)",
            got=f"draws whose distribution of the second token differs from the expected one; the group that differs "
                f"most:\n{worst.table()}",
            expected=f"draws from softmax(top-k logits after prompt + first token / {temperature:g}): {second.summary()}",
            hint=hint))
    outcome.note(f"T={temperature!r}, {instance}: first token {first.summary()}; second token given {len(groups)} first "
                 f"tokens ({sum(g.draws for g in second.groups)} draws): {second.summary()}.")


# -- top_k_logits itself ----------------------------------------------------------------------------
def top_k_cases(rng, vocab_size: int, k: int) -> list[tuple[str, np.ndarray, int]]:
    """(description, logits (1, V) float32, k) for the direct check of top_k_logits: random logits
    with a unique k-th value (k, 1 and 5), ties at the k-th value inside and outside the top k, a
    row already filtered (half of it -1e10), every token kept (k = V), and k = 0."""
    def logits():
        return (rng.normal(0.0, 2.0, size=(1, vocab_size))).astype(np.float32)
    cases = [(f"random logits, k = config.top_k = {k}", logits(), k), ("random logits, k = 1", logits(), 1),
             ("random logits, k = 5", logits(), 5)]
    tied = logits()
    order = np.argsort(-tied[0], kind="stable")
    tied[0, order[k:k + 2]] = tied[0, order[k - 1]]  # the (k+1)-th and (k+2)-th equal the k-th: all three kept
    tied[0, order[k - 2]] = tied[0, order[k - 1]]  # and the (k-1)-th too
    cases.append((f"logits whose k-th largest value is shared by 4 tokens, k = {k}", tied, k))
    filtered = logits()
    filtered[0, rng.permutation(vocab_size)[: vocab_size // 2]] = -1e10
    cases.append((f"logits with half the entries already -1e10, k = {k}", filtered, k))
    cases.append((f"random logits, k = V = {vocab_size} (every token kept)", logits(), vocab_size))
    cases.append(("random logits, k = 0 (the course's top_k_logits returns them unchanged)", logits(), 0))
    return cases


def _top_k_expected(logits: np.ndarray, k: int) -> np.ndarray:
    """The kept entries of (1, V) logits: every one ≥ the k-th largest (ties kept); all when k = 0."""
    if k == 0:
        return np.ones(logits.shape, dtype=bool)
    kth = np.sort(logits[0])[::-1][k - 1]
    return logits >= kth


def top_k_hint(got_kept: np.ndarray, expected_kept: np.ndarray, logits: np.ndarray, k: int) -> str:
    """What a wrong mask most likely is: k − 1 or k + 1 tokens kept, ties dropped, or k = 0 mishandled."""
    wanted = ("top_k_logits keeps every logit ≥ the k-th largest of its row (ties included) unchanged and sets the "
              "others to -1e10, e.g. torch.where(logits < torch.topk(logits, k).values[:, -1:], -1e10, logits); "
              "k == 0 returns logits unchanged.")
    kept, expected = int(got_kept.sum()), int(expected_kept.sum())
    if k == 0:
        return f"with k = 0 the course's top_k_logits returns logits unchanged; yours kept {kept} of them. " + wanted
    ranks = np.argsort(-logits[0], kind="stable")
    if kept == expected - 1 and not got_kept[0, ranks[k - 1]] and np.all(got_kept[0, ranks[: k - 1]]):
        return f"you kept k − 1 = {k - 1} tokens: the k-th largest was masked too (topk(logits, k − 1), or <= instead " \
               f"of <?). " + wanted
    if kept == expected + 1 and np.all(got_kept[expected_kept]):
        return f"you kept k + 1 = {k + 1} tokens, one too many (topk(logits, k + 1), or values[:, k]?). " + wanted
    if kept == k and expected > k and np.all(expected_kept[got_kept]):
        return (f"you kept exactly k = {k} tokens, but {expected} share or beat the k-th value: ties at the k-th value "
                "must all be kept (compare with the k-th value rather than keeping topk's indices). " + wanted)
    return wanted


@pytest.mark.graded("p6c_top_k")
def test_top_k_logits(student, reference, rng, outcome):
    """top_k_logits(logits, k) is a deterministic function of its input: judged exactly on every
    case of top_k_cases. Kept entries must come back unchanged (float equality); masked entries
    may be -1e10 (the course's value) or anything ≤ -1e9, -inf included (softmax gives them
    probability 0 either way); the output a float tensor or array of shape (1, V).

    p6c's points are for sample(), and top_k_logits comes with the course's starter code: this row
    also needs one call of sample() to run without an error (what it returns is p6c_form's
    business), so a template whose sample is not written gets nothing for the filter it was given."""
    vocab_size, k = reference.config["vocab_size"], reference.config["top_k"]
    try:
        student.harness("p6_sample", rng_seed=_seed(rng), cases=[
            {"prompt": list(reference.prompt("prompt-one-token").tokens), "length": 1, "temperature": None}])
    except StudentCodeError as error:  # say why a row about the filter needs sample()
        error.message = ("This row checks top_k_logits, which comes with the starter code; p6c's points are for "
                         "sample(), so it also needs one call of sample() to run without an error, and "
                         + error.message)
        raise
    cases = top_k_cases(rng, vocab_size, k)
    answers = student.harness("p6_top_k", cases=[{"logits": logits, "k": kk} for _, logits, kk in cases])

    def judge(item):
        (description, logits, kk), entry = item
        call = f"top_k_logits(logits, {kk})"
        instance = f"{description} (a float32 tensor of shape (1, {vocab_size}))"
        value = passed_on(entry, call=call, instance=instance, expected=f"a float tensor of shape (1, {vocab_size})")
        array = value.array if isinstance(value, TensorValue) else value
        if type(array) is not np.ndarray or array.dtype.kind != "f" or array.shape != (1, vocab_size):
            raise CheckFailed(feedback(call=call, instance=instance, got=f"{short(value)}, {describe(value)}",
                                       expected=f"a float tensor of shape (1, {vocab_size}), the filtered logits",
                                       hint="return the whole row, with filtered entries set to -1e10."))
        got = array.astype(np.float64)
        expected_kept = _top_k_expected(logits, kk)
        if np.isnan(got).any():
            raise CheckFailed(feedback(call=call, instance=instance, got="logits with NaN entries",
                                       expected="finite kept entries and -1e10 elsewhere"))
        got_kept = got > MASK_LEVEL
        if not np.array_equal(got_kept, expected_kept):
            token = int(np.flatnonzero(got_kept[0] != expected_kept[0])[0])
            raise CheckFailed(feedback(
                call=call, instance=instance,
                got=f"{int(got_kept.sum())} entries kept (> -1e9), e.g. token {token} "
                    f"{'kept' if got_kept[0, token] else 'masked'} (its logit {float(logits[0, token]):.6g})",
                expected=f"the {int(expected_kept.sum())} entries ≥ the {ordinal(max(kk, 1))} largest logit "
                         f"({float(np.sort(logits[0])[::-1][max(kk, 1) - 1]):.6g}) kept, every other one masked",
                hint=top_k_hint(got_kept, expected_kept, logits, kk)))
        changed = np.flatnonzero(got[expected_kept] != logits[expected_kept].astype(np.float64))
        if changed.size:
            token = int(np.flatnonzero(expected_kept[0])[changed[0]])
            half = isinstance(value, TensorValue) and value.dtype in ("torch.float16", "torch.bfloat16")
            raise CheckFailed(feedback(
                call=call, instance=instance, got=f"logits[0, {token}] = {got[0, token]!r} ({changed.size} kept entries "
                                                  f"changed)",
                expected=f"{float(logits[0, token])!r}: kept logits come back unchanged",
                hint=("your output is half precision (float16/bfloat16): keep the input's dtype. " if half else "")
                + "only the filtered entries change; don't scale, normalise or round the others."))
    check_each(zip(cases, answers), judge, count_errors=True)
    outcome.note(f"All {len(cases)} outputs exact: entries ≥ the k-th largest kept unchanged (ties included), the others "
                 f"≤ -1e9; k = 0 and k = V handled as the course's top_k_logits does.")
