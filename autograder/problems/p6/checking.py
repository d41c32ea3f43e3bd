"""What P6's checks share: tolerances, the reference outputs, and judging returned tensors.

Every tolerance is stated here, with why:
- TIE_EPS: a token whose logit is within 1e-2 of the k-th largest may be kept by one device's
  top-k and dropped by another's (measured at GPT-2 small's size: TF32 changes logits by up to
  2.7e-3, and the median gap between the 40th and 41st logit is 2.8e-3). Masks are compared, and
  sampled tokens judged in or out of the top-k, only away from such ties.
- LL_RTOL, LL_ATOL: log_likelihood within 0.1 nats + 1e-4·|reference| (measured CPU vs GPU:
  ≤ 2.5e-4 nats in fp32, 0.010 with TF32; a dropped or extra token's term costs nats).
- H1_*: horizon-1 logits within 1e-2 + 1e-4·|reference| (TF32 logit error 2.7e-3 over T ≥ 0.5).
- H2_*: horizon-2 logits within 2e-2 + 1e-4·|reference| after removing one shift common to the
  surviving tokens (adding a constant to every kept logit leaves the softmax unchanged; the
  joint's two steps each carry the device error over T).
"""
from __future__ import annotations

import numpy as np

from ...child.codec import TensorValue
from ...compare import CheckFailed, as_array, expect_close, feedback, known_mistake
from ...processes import Reply
from .reference import MASK_LEVEL, Prompt, ReferenceOutputs, Scaled, reference_outputs

TIE_EPS = 1e-2
LL_RTOL, LL_ATOL = 1e-4, 0.1
H1_RTOL, H1_ATOL = 1e-4, 1e-2
H2_RTOL, H2_ATOL = 1e-4, 2e-2
MASKED = -1e10  # the course's value for a filtered-out logit


def reference_for(settings) -> ReferenceOutputs:
    """The reference outputs for this run's model and data (built and cached on first use)."""
    if settings.model_dir is None:
        raise RuntimeError("P6 checks need a model, but the run prepared none")
    return reference_outputs(settings.model_dir, device=settings.device, files=settings.data_files)


def describe_tokens(text: str | None, tokens) -> str:
    """A text or prompt as feedback shows it: its string (cut) and token count."""
    if text is None:
        return f"{len(tokens)} random token ids"
    shown = text if len(text) <= 60 else text[:57] + "…"
    return f"{shown!r} ({len(tokens)} tokens)"


def passed_on(entry: dict, *, call: str, expected: str, instance: str = "", hint: str = ""):
    """The value a harness passed on from student code ({"value": v}); CheckFailed naming what
    came back when the harness could not pass it on ({"unsupported": {"got", "type"}}); the
    student's own error, as the sandbox reports it, when the call failed ({"error": info})."""
    reply = Reply.decode(entry, what=call, instance=instance)  # from a process that ran student code
    if reply.error is not None:
        raise reply.error
    if reply.ok:
        return reply.value
    bad = reply.unsupported
    raise CheckFailed(feedback(call=call, instance=instance, got=f"{bad.get('got', '?')}, {bad.get('type', '?')}",
                               expected=expected, hint=hint))


H2_MISTAKES = {  # p6_horizon_two_variants's names, as hints
    "horizon_one": "your horizon-2 output equals logits / T (up to a constant): that is horizon 1; horizon 2 "
                   "looks one token further, through the joint p(t, s).",
    "temperature_outside": "that is logsumexp_s(log p(t, s)) / T, the temperature applied after the logsumexp: "
                           "divide log p(t, s) by T inside it, logsumexp_s(log p(t, s) / T).",
    "no_second_top_k": "the second step was not top-k filtered: p_topk(s | t) is the softmax of "
                       "top_k_logits(next logits, config.top_k).",
    "temperature_ignored": "that is logsumexp_s(log p(t, s)), without the temperature: divide by T inside the "
                           "logsumexp.",
    "temperature_multiplied": "that multiplies log p(t, s) by T instead of dividing.",
    "no_first_probability": "the first token's own probability p(t) = softmax(logits)[t] is missing from the "
                            "joint p(t, s) = p(t) · p_topk(s | t).",
    "no_epsilon": "the joint's log lacks the + 1e-10: log(p(t, s) + 1e-10), so the filtered second tokens still "
                  "count, as the course defines it.",
}


def scaled_hint(got: np.ndarray, reference: np.ndarray, compared: np.ndarray, *, horizon: int,
                temperature: float | None, dtype: str | None, variants=None) -> str | None:
    """The hint naming the known mistake a wrong temperature_scale output matches on the compared
    entries (None: no known one). variants: a callable giving p6_horizon_two_variants's answer
    (horizon 2 only; called only here, when the output is wrong)."""
    if dtype in ("torch.float16", "torch.bfloat16"):
        return "your output is half precision (float16 or bfloat16): compute in the logits' own dtype (float32)."
    values = got[compared]
    if horizon == 2 and temperature is not None:
        if variants is None:
            return None
        answer = variants()
        position = {int(t): i for i, t in enumerate(np.asarray(answer["ids"]))}
        ids = np.flatnonzero(compared)
        if not all(int(t) in position for t in ids):
            return None
        index = np.array([position[int(t)] for t in ids])
        return known_mistake(values, [(hint, np.asarray(answer[name])[index]) for name, hint in H2_MISTAKES.items()],
                             rtol=H2_RTOL, atol=H2_ATOL, shift=True)
    target = reference[compared]
    if temperature is None:
        return known_mistake(values, [("your output is the logits plus one constant per row (log_softmax(logits)?): "
                                       "with temperature None, return the logits themselves.", target)],
                             rtol=H1_RTOL, atol=H1_ATOL, shift=True)
    named = known_mistake(values, [
        ("your output is the logits unchanged: the temperature was ignored.", target * temperature),
        ("your output is logits × T: the temperature was multiplied, not divided.", target * temperature**2),
    ], rtol=H1_RTOL, atol=H1_ATOL * temperature**2)
    if named:
        return named
    shift = float(np.median(values - target)) if values.size else 0.0
    return known_mistake(values, [(f"your output is logits / T minus {-shift:.4g}, one constant for the whole row: "
                                   f"that is log_softmax(logits / T) (or another normalisation). It gives the same "
                                   f"sampling distribution, but horizon 1 is defined as logits / T itself (see the "
                                   f"README's rule): return logits / temperature.", target)],
                         rtol=H1_RTOL, atol=H1_ATOL, shift=True)


def check_scaled(entry: dict, prompt: Prompt, expected: Scaled, *, vocab_size: int, horizon: int,
                 temperature: float | None, call: str, hint: str, variants=None) -> None:
    """Judge one temperature_scale output (1, V) against the reference's.

    Outside top-k ties (TIE_EPS), an entry must be kept (> -1e9) exactly where the reference
    keeps it; kept entries must match within H1_* (horizon 1, or temperature None) or, after one
    common shift, H2_* (horizon 2). Masked entries: any value ≤ -1e9, -inf included, for horizon 1
    (softmax gives them probability 0 either way), -1e10 for horizon 2 (the course's definition).
    """
    instance = f"prompt {describe_tokens(prompt.text, prompt.tokens)}"
    value = passed_on(entry, call=call, instance=instance, expected=f"a float tensor of shape (1, {vocab_size})")
    got = as_array(value, shape=(1, vocab_size), call=call, instance=instance, hint=hint, name="logits",
                   minus_infinity_ok=True)[0]  # -inf: a masked entry (judged below)
    reference = np.full(vocab_size, expected.masked)
    reference[expected.kept_ids] = expected.kept_values
    ties = np.zeros(vocab_size, dtype=bool)
    ties[prompt.ties(TIE_EPS)] = True
    should_keep = reference > MASK_LEVEL
    kept = got > MASK_LEVEL
    wrong = np.flatnonzero((kept != should_keep) & ~ties)
    if wrong.size:
        token = int(wrong[0])
        state = "masked" if should_keep[token] else "kept"
        if np.all((got >= 0.0) & (got <= 1.0)) and abs(float(got.sum()) - 1.0) < 1e-3:
            hint = ("your output looks like probabilities (entries in [0, 1] summing to 1): return logits; the softmax "
                    "comes later, in sample(). " + hint)
        raise CheckFailed(feedback(
            call=call, instance=instance, hint=hint,
            got=f"logits with {wrong.size} tokens kept or masked wrongly, e.g. token {token} {state} (logits[0, {token}] = {got[token]:.6g})",
            expected=f"the {int(should_keep.sum())} tokens that survive top-k kept and every other one masked "
                     f"(≤ -1e9; tokens within {TIE_EPS:g} of the k-th logit may go either way)"))
    compared = kept & should_keep & ~ties
    if horizon == 2 and temperature is not None:
        if np.any(np.abs(got[~kept] - MASKED) > 1e-6 * abs(MASKED)):
            token = int(np.flatnonzero(~kept & (np.abs(got - MASKED) > 1e-6 * abs(MASKED)))[0])
            divided = np.allclose(got[~kept], MASKED / temperature, rtol=1e-6, atol=0.0)
            named = ("your masked entries are -1e10 / T: the whole row was divided by T, as horizon 1 does. Horizon 2 "
                     "sets every filtered entry to -1e10 and gives each surviving token t the logsumexp over s of "
                     "log p(t, s) / T. " if divided else "")
            raise CheckFailed(feedback(call=call, instance=instance, hint=named + hint,
                                       got=f"logits[0, {token}] = {got[token]!r}",
                                       expected="-1e10 for every token that did not survive top-k"))
        shift = float(np.median(got[compared] - reference[compared])) if compared.any() else 0.0
        target, rtol, atol = reference[compared] + shift, H2_RTOL, H2_ATOL
        instance += f" (kept logits compared after removing a common shift of {shift:.4g})"
    else:
        target, rtol, atol = reference[compared], H1_RTOL, H1_ATOL
    # Compared as (1, V) rows so feedback names the token: entries not compared are set equal.
    got_row, expected_row = np.zeros(vocab_size), np.zeros(vocab_size)
    got_row[compared], expected_row[compared] = got[compared], target
    if np.any(np.abs(got[compared] - target) > atol + rtol * np.abs(target)):
        named = scaled_hint(got, reference, compared, horizon=horizon, temperature=temperature, variants=variants,
                            dtype=value.dtype if isinstance(value, TensorValue) else None)
        hint = f"{named} {hint}" if named else hint
    expect_close(got_row[None], expected_row[None], rtol=rtol, atol=atol, call=call, instance=instance,
                 hint=hint, name="logits")


def sequence(entry: dict, *, prompt_tokens, length: int, vocab_size: int, call: str, instance: str,
             hint: str = "") -> np.ndarray:
    """A sample() return value judged: a LongTensor (1, T0 + length) on any device, starting
    with the prompt, every id in [0, V). Returns the ids (T0 + length,) as int64."""
    shape = (1, len(prompt_tokens) + length)
    value = passed_on(entry, call=call, instance=instance, expected=f"a LongTensor of shape {shape}")
    if not isinstance(value, TensorValue) or value.dtype != "torch.int64":
        kind = value.dtype if isinstance(value, TensorValue) else type(value).__name__
        raise CheckFailed(feedback(call=call, instance=instance, got=f"a {kind} value",
                                   expected=f"a torch LongTensor (torch.int64) of shape {shape}",
                                   hint="torch.multinomial returns int64 ids; keep start_text's dtype when you concatenate."))
    ids = value.array
    if ids.shape != shape:
        raise CheckFailed(feedback(call=call, instance=instance, got=f"a tensor of shape {ids.shape}",
                                   expected=f"shape {shape}: start_text's {len(prompt_tokens)} tokens, then {length} new ones",
                                   hint=hint or "return the whole sequence, prompt included, with a batch dimension of 1."))
    ids = ids[0].astype(np.int64)
    if not np.array_equal(ids[: len(prompt_tokens)], np.asarray(prompt_tokens)):
        raise CheckFailed(feedback(call=call, instance=instance, got=f"a sequence starting {ids[:len(prompt_tokens)].tolist()[:12]}",
                                   expected=f"it to start with start_text {list(prompt_tokens)[:12]}",
                                   hint="concatenate the new tokens after start_text, unchanged."))
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise CheckFailed(feedback(call=call, instance=instance, got=f"token ids from {ids.min()} to {ids.max()}",
                                   expected=f"ids in [0, {vocab_size})"))
    return ids
