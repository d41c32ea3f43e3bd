"""P6 checks of temperature_scale (parts p6f: horizon 1, p6h: horizon 2, extra credit).

In the child, the harness runs the model on a prompt, applies the course's top-k filter to the
last position's logits (the grader's own top_k_logits, not the student's) and calls
``temperature_scale(logits, model, new_past, config, T, horizon)`` as sample() would. The result
(1, V) is compared with the reference's on the same prompt, from the reference cache
(autograder/problems/p6/checking.py, ``check_scaled``):
- outside top-k ties (a logit within TIE_EPS = 1e-2 of the k-th, which another device's top-k
  may keep or drop), exactly the reference's surviving tokens must be kept (> -1e9);
- horizon 1 and temperature None: kept logits within 1e-2 + 1e-4·|reference| (None: the
  logits unchanged; horizon 1: logits / T); masked ones any value ≤ -1e9 (probability 0);
- horizon 2: kept logits within 2e-2 + 1e-4·|reference| after one common shift (the softmax
  ignores it), every other entry -1e10.
Public prompts and temperatures are fixed; random ones are drawn from the pools by the seed.
"""
import pytest

from autograder.compare import check_each
from autograder.problems.p6.checking import check_scaled, reference_for
from autograder.problems.p6.instances import LOW_TEMPERATURES, HIGH_TEMPERATURES, PUBLIC_TEMPERATURES

H1_HINT = "Horizon 1 returns logits / temperature; temperature None returns the logits unchanged."
H2_HINT = ("For each first token t that survived top-k, p(t, s) = softmax(logits)[t] * p_topk(s | t), where p_topk is "
           "the top-k filtered softmax of model([[t]], past=new_past); joint logits log(p + 1e-10); t's logit is the "
           "logsumexp over s of joint / temperature; every other entry -1e10.")


@pytest.fixture(scope="module")
def reference(run_settings):
    return reference_for(run_settings)


def check_cases(student, reference, cases, outcome, *, horizon_note: str, clean_process=None) -> None:
    """cases: (prompt, temperature, horizon) triples, all sent in one harness call ("N of M answers
    wrong. The first: …"). The first wrong horizon-2 output, the one whose feedback is shown, is
    compared with what known mistakes give (computed in the clean process, when given)."""
    answers = student.harness("p6_temperature_scale", cases=[
        {"prompt": list(prompt.tokens), "temperature": t, "horizon": h} for prompt, t, h in cases])
    vocab_size = reference.config["vocab_size"]

    def judge(item, first):
        (prompt, temperature, horizon), entry = item
        variants = None
        if clean_process is not None and first:
            def variants():
                return clean_process.harness("p6_horizon_two_variants", prompt=list(prompt.tokens), temperature=temperature)
        check_scaled(entry, prompt, reference.scaled_output(prompt.id, temperature, horizon), vocab_size=vocab_size,
                     horizon=horizon, temperature=temperature,
                     call=f"temperature_scale(logits, model, new_past, config, {temperature!r}, {horizon})",
                     hint=H2_HINT if horizon == 2 and temperature is not None else H1_HINT, variants=variants)
    check_each(zip(cases, answers), judge, count_errors=True, tell_first=True)
    shown = ", ".join(f"T={t!r}" for t in sorted({t for _, t, _ in cases}, key=lambda t: -1 if t is None else t))
    outcome.note(f"{len(cases)} outputs match the reference ({horizon_note}; {shown}; "
                 f"{len({p.id for p, _, _ in cases})} prompts).")


def _pool(reference, rng, count: int):
    pool = [p for p in reference.prompts if not p.public]
    return [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]


def _random_temperatures(rng) -> tuple[float, float]:
    return float(rng.choice(LOW_TEMPERATURES)), float(rng.choice(HIGH_TEMPERATURES))


@pytest.mark.graded("p6f_public")
def test_horizon_one_public(student, reference, outcome):
    public = [p for p in reference.prompts if p.public]
    cases = [(p, t, 1) for p in public for t in (None, *PUBLIC_TEMPERATURES)]
    check_cases(student, reference, cases, outcome, horizon_note="horizon 1, and temperature None")


@pytest.mark.graded("p6f_random")
def test_horizon_one_random(student, reference, rng, outcome):
    temperatures = _random_temperatures(rng)
    cases = [(p, t, 1) for p in _pool(reference, rng, 2) for t in temperatures]
    check_cases(student, reference, cases, outcome, horizon_note="horizon 1")


@pytest.mark.graded("p6h_public")
def test_horizon_two_public(student, clean_process, reference, outcome):
    public = [p for p in reference.prompts if p.public][:2]
    cases = [(public[0], None, 2)] + [(p, t, 2) for p in public for t in PUBLIC_TEMPERATURES]
    check_cases(student, reference, cases, outcome, horizon_note="horizon 2, and temperature None",
                clean_process=clean_process)


@pytest.mark.graded("p6h_random")
def test_horizon_two_random(student, clean_process, reference, rng, outcome):
    cases = [(p, t, 2) for p in _pool(reference, rng, 1) for t in _random_temperatures(rng)]
    check_cases(student, reference, cases, outcome, horizon_note="horizon 2", clean_process=clean_process)
