"""P6c, P6f, P6h reference: top-k filtering, temperature scaling and sampling from GPT-2.

The course's signatures, kept exactly. `model(input_ids, past=past)` returns
(logits (B, T, V), presents); `past` is only read, so one new_past can be reused for every
candidate first token in horizon-2 scaling.
"""
import torch
import torch.nn.functional as F
from tqdm import trange

MASKED = -1e10  # the course's value for a filtered-out logit (exact in float32)


def top_k_logits(logits, k):
    """logits (B, V) with every entry below the row's k-th largest set to -1e10 (ties at the
    k-th value are kept). k == 0 leaves logits unchanged, as in the course's code."""
    if k == 0:
        return logits
    values, _ = torch.topk(logits, k)  # (B, k), sorted descending
    min_values = values[:, -1:]  # (B, 1)
    return torch.where(logits < min_values, torch.full_like(logits, MASKED), logits)


def temperature_scale(logits, model, new_past, config, temperature, temperature_horizon):
    """Next-token logits (1, V) after temperature scaling.

    logits: (1, V), already top-k filtered; new_past: the cache after the current token.
    temperature None: logits unchanged. Horizon 1 (p6f): logits / temperature.
    Horizon 2 (p6h): for each first token t that survived top-k, p(t, s) = p(t) p_topk(s | t),
    with p(t) = softmax(logits)[t] and p_topk(s | t) the top-k filtered softmax of the model's
    next logits after t (computed from new_past); the returned logit of t is
    logsumexp_s(log(p(t, s) + 1e-10) / T), and -1e10 for every filtered-out t.
    """
    if temperature is None:
        return logits
    if temperature_horizon == 1:
        return logits / temperature
    if temperature_horizon == 2:
        first_probs = F.softmax(logits, dim=-1)  # (1, V); filtered entries get probability 0
        first_tokens = torch.nonzero(logits[0] > MASKED).flatten().tolist()  # survivors of top-k
        joint_probs = []
        for t in first_tokens:
            new_current_text = torch.tensor([[t]], device=logits.device)  # (1, 1)
            next_logits, _ = model(new_current_text, past=new_past)  # (1, 1, V)
            next_logits = top_k_logits(next_logits[:, -1, :], k=config.top_k)  # (1, V)
            joint_probs.append(first_probs[0, t] * F.softmax(next_logits, dim=-1))  # (1, V)
        joint_probs = torch.cat(joint_probs, dim=0)  # (K, V): p(first_tokens[i], s)
        joint_logits = torch.log(joint_probs + 1e-10)
        first_logits = torch.logsumexp(joint_logits / temperature, dim=-1)  # (K,)
        return_logits = torch.full_like(logits, MASKED)  # (1, V)
        return_logits[0, first_tokens] = first_logits
        return return_logits
    raise ValueError(f"temperature_horizon must be 1 or 2, got {temperature_horizon!r}")


def sample(model, start_text, config, length, temperature=None, temperature_horizon=1):
    """Continue start_text (LongTensor (1, T0)) by `length` tokens; returns (1, T0 + length).

    Each step takes the last position's logits, applies top_k_logits(., config.top_k) and
    temperature_scale, draws one token from the softmax with torch.multinomial and feeds it
    back with the cache.
    """
    current_text = start_text
    past = None
    output = [start_text]
    with torch.no_grad():
        for _ in trange(length, disable=None):  # disable=None: no bar when not on a terminal
            logits, new_past = model(current_text, past=past)  # (1, T, V)
            logits = top_k_logits(logits[:, -1, :], k=config.top_k)  # (1, V)
            logits = temperature_scale(logits, model, new_past, config, temperature,
                                       temperature_horizon)
            probs = F.softmax(logits, dim=-1)  # (1, V)
            current_text = torch.multinomial(probs, num_samples=1)  # (1, 1)
            output.append(current_text)
            past = new_past
    return torch.cat(output, dim=1)
