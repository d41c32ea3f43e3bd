"""P6's clean harnesses, run only in clean children (never where student code was imported):
the model's own logits around the top-k boundary, replays of a student's sampled tokens, what
known mistakes give (for feedback), the config. Student code must not see them (they hold the
right log-likelihood and horizon-2 scaling): this file is not in the child's runtime; a clean
child receives it in its first request (registry.Problem.clean_modules).
"""
from __future__ import annotations

from ...child.harness import assert_clean, harness
from .child import MASKED, _ids, _model, _top_k


# -- clean harnesses (no student code) --------------------------------------------------------
@harness("p6_config")
def p6_config(child):
    """The model's config as the student's code sees it (sizes, top_k, seed)."""
    assert_clean()
    _, config = _model(child)
    return {name: getattr(config, name) for name in
            ("vocab_size", "n_ctx", "n_positions", "n_embd", "n_layer", "n_head", "top_k", "seed")}


@harness("p6_next_logits")
def p6_next_logits(child, *, prompts, near):
    """For each prompt (token ids), the model's next-token logits around the top-k boundary.

    Returns one dict per prompt: "top_ids"/"top_logits" (k ids, float64 logits, largest first)
    and "near_ids"/"near_logits" (every other token whose logit is within ``near`` of the k-th).
    """
    import torch
    assert_clean()
    model, config = _model(child)
    answers = []
    for tokens in prompts:
        with torch.no_grad():
            logits, _ = model(_ids(child, tokens))
        answers.append(_near_top(logits[0, -1].double().cpu(), config.top_k, near))
    return answers


@harness("p6_replay_support")
def p6_replay_support(child, *, sequences, starts):
    """Replay sampled sequences through the model, without a cache.

    For sequence s with prompt length starts[i], each generated step j (token s[T0 + j]) gets
    the logit the model gives that token after s[:T0 + j], the k-th largest logit there, and
    the token's rank (0 = most likely). Returns, per sequence, {"logit", "kth", "rank"} arrays.
    """
    import torch
    assert_clean()
    model, config = _model(child)
    answers = []
    for tokens, start in zip(sequences, starts):
        ids = _ids(child, tokens)  # (1, T)
        with torch.no_grad():
            logits, _ = model(ids[:, :-1])  # (1, T - 1, V): position p predicts token p + 1
        steps = logits[0, start - 1:].double().cpu()  # (length, V)
        drawn = ids[0, start:].cpu()  # (length,)
        chosen = steps.gather(1, drawn[:, None])[:, 0]
        answers.append({"logit": chosen.numpy(), "kth": torch.topk(steps, config.top_k).values[:, -1].numpy(),
                        "rank": (steps > chosen[:, None]).sum(dim=1).numpy()})
    return answers


def _near_top(last, k: int, near: float) -> dict:
    """top_ids/top_logits (the k largest of last (V,), float64, largest first) and near_ids/
    near_logits (every other token within ``near`` of the k-th), as p6_next_logits gives them."""
    import torch
    top = torch.topk(last, k)
    outside = torch.ones_like(last, dtype=torch.bool)
    outside[top.indices] = False
    near_ids = torch.nonzero(outside & (last >= top.values[-1] - near)).flatten()
    return {"top_ids": top.indices.numpy(), "top_logits": top.values.numpy(),
            "near_ids": near_ids.numpy(), "near_logits": last[near_ids].numpy()}


def _after_each_first_token(child, prompt, first_tokens):
    """(prompt's last-position logits (V,), next logits (K, V) after prompt + [t] for each first
    token t): one forward of the prompt, then one batched forward of all first tokens with the
    prompt's cache expanded to batch K (the cache is only read)."""
    import torch
    model, _ = _model(child)
    with torch.no_grad():
        logits, past = model(_ids(child, prompt))
        firsts = torch.tensor([[int(t)] for t in first_tokens], dtype=torch.long, device=child.device)  # (K, 1)
        batch_past = [layer.expand(-1, firsts.size(0), -1, -1, -1) for layer in past]
        next_logits, _ = model(firsts, past=batch_past)  # (K, 1, V)
    return logits[0, -1].double().cpu(), next_logits[:, -1].double().cpu()


@harness("p6_second_step_logits")
def p6_second_step_logits(child, *, prompt, first_tokens, near):
    """For each first token t, the model's logits for the token after prompt + [t], around the
    top-k boundary (as p6_next_logits: top_ids, top_logits, near_ids, near_logits)."""
    assert_clean()
    _, config = _model(child)
    _, after = _after_each_first_token(child, prompt, first_tokens)
    return [_near_top(row, config.top_k, near) for row in after]


@harness("p6_log_likelihood_variants")
def p6_log_likelihood_variants(child, *, tokens):
    """What known mistakes give as log_likelihood on one text (float64 unless named otherwise):
    "right" the sum of log p(text_t | text_<t), t ≥ 1; "averaged"; "last_term_dropped";
    "first_term_dropped"; "shifted" (the logits at position t scored against token t);
    "first_token_included" (<|endoftext|>, id V − 1, put before the text, all T terms; absent when
    the text fills the context); "raw_logits" (logits summed, no log-softmax); "float16" (the
    log-softmax and the sum in float16)."""
    import torch
    import torch.nn.functional as F
    assert_clean()
    model, config = _model(child)
    ids = _ids(child, tokens)  # (1, T)
    targets = ids[0, 1:, None]  # (T - 1, 1)
    with torch.no_grad():
        logits = model(ids)[0][0]  # (T, V) float32
        log_probs = F.log_softmax(logits.double(), dim=-1)
        terms = log_probs[:-1].gather(1, targets)[:, 0]  # (T - 1,)
        variants = {
            "right": terms.sum(), "averaged": terms.mean(), "last_term_dropped": terms[:-1].sum(),
            "first_term_dropped": terms[1:].sum(), "shifted": log_probs[1:].gather(1, targets).sum(),
            "raw_logits": logits[:-1].double().gather(1, targets).sum(),
            "float16": F.log_softmax(logits[:-1].half(), dim=-1).gather(1, targets).sum(),
        }
        if ids.size(1) < config.n_positions:
            eot = torch.full((1, 1), config.vocab_size - 1, dtype=torch.long, device=child.device)
            with_eot = F.log_softmax(model(torch.cat([eot, ids], dim=1))[0][0, :-1].double(), dim=-1)
            variants["first_token_included"] = with_eot.gather(1, ids[0, :, None]).sum()
    return {name: float(value) for name, value in variants.items()}


@harness("p6_horizon_two_variants")
def p6_horizon_two_variants(child, *, prompt, temperature):
    """temperature_scale at horizon 2 as known mistakes compute it, on the tokens that survive the
    prompt's top-k (float64): "right"; "horizon_one" (logits / T); "temperature_outside"
    (logsumexp(joint) / T); "no_second_top_k" (the second step unfiltered); "temperature_ignored"
    (logsumexp(joint)); "temperature_multiplied" (logsumexp(joint · T)); "no_first_probability"
    (p(t) left out of the joint); "no_epsilon" (log p(t, s) without + 1e-10, so only the second
    step's survivors count). Returns {"ids": the surviving tokens, name: values at them}."""
    import torch
    import torch.nn.functional as F
    assert_clean()
    _, config = _model(child)
    last = _top_k(_model_last_logits(child, prompt), config.top_k)[0]  # (V,) float32 filtered
    first_tokens = torch.nonzero(last > MASKED).flatten()
    _, after = _after_each_first_token(child, prompt, first_tokens.tolist())  # (K, V) float64
    first = F.softmax(last.double(), dim=-1)[first_tokens][:, None]  # (K, 1)
    filtered = _top_k(after, config.top_k)
    second, unfiltered = F.softmax(filtered, dim=-1), F.softmax(after, dim=-1)  # (K, V)
    t = float(temperature)

    def lse(values):
        return torch.logsumexp(values, dim=-1)
    joint = torch.log(first * second + 1e-10)
    kept = filtered > MASKED
    variants = {
        "right": lse(joint / t), "horizon_one": last.double()[first_tokens] / t, "temperature_outside": lse(joint) / t,
        "no_second_top_k": lse(torch.log(first * unfiltered + 1e-10) / t), "temperature_ignored": lse(joint),
        "temperature_multiplied": lse(joint * t), "no_first_probability": lse(torch.log(second + 1e-10) / t),
        "no_epsilon": lse(torch.where(kept, torch.log(first * second) / t, torch.full_like(joint, -torch.inf))),
    }
    return {"ids": first_tokens.cpu().numpy(), **{name: value.cpu().numpy() for name, value in variants.items()}}


def _model_last_logits(child, prompt):
    """The model's last-position logits (1, V) float32 on a prompt."""
    import torch
    model, _ = _model(child)
    with torch.no_grad():
        return model(_ids(child, prompt))[0][:, -1, :]
