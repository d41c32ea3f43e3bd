import torch
import torch.nn.functional as F
from tqdm import trange


def top_k_logits(logits, k):
    """Entries below the k-th largest become -1e10 (given; do not change)."""
    if k == 0:
        return logits
    values, _ = torch.topk(logits, k)
    min_values = values[:, -1]
    return torch.where(logits < min_values, torch.ones_like(logits, dtype=logits.dtype) * -1e10, logits)


def temperature_scale(logits, model, new_past, config, temperature, temperature_horizon):
    """Horizon 1: logits / temperature (temperature None leaves them unchanged).
    Horizon 2 (extra credit): for each first token t that survived top-k, p(t, s) = p(t) p_topk(s | t)
    using the cache after t; joint logits log(p + 1e-10); first-token logits logsumexp over s of
    joint / temperature; every other entry -1e10."""
    if temperature is None:
        return logits
    raise NotImplementedError


def sample(model, start_text, config, length, temperature=None, temperature_horizon=1):
    """start_text: LongTensor (1, T0). Each step takes the last position's logits, applies
    top_k_logits(..., config.top_k) then temperature_scale, draws one token from the softmax and
    feeds it back with the cache (logits, presents = model(x, past=past)).
    Returns a LongTensor (1, T0 + length) that starts with start_text."""
    raise NotImplementedError
