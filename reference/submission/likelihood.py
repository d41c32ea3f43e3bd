"""P6d reference: the log-likelihood of a text under GPT-2."""
import torch

ROWS = 16  # positions taken to float64 at a time (16 x 50257 doubles: 6 MB)


def log_likelihood(model, text):
    """sum_{t>=1} log p(text_t | text_<t) for text a LongTensor (1, T), as a Python float.

    The first token's own probability is left out (the model has no context to predict it).
    The log-softmax is taken in float64 so the reference adds no rounding of its own, a block of
    positions at a time: for a 1024-token text the float64 log-probabilities of all positions at
    once would take 400 MB.
    """
    with torch.no_grad():
        logits = model(text)[0]  # (1, T, V); position t predicts token t + 1 (the cache is not kept)
        logits, targets = logits[0, :-1], text[0, 1:]  # (T-1, V), (T-1,)
        total = 0.0
        for start in range(0, targets.numel(), ROWS):
            block = logits[start:start + ROWS].double()  # (rows, V)
            chosen = block.gather(1, targets[start:start + ROWS, None])  # (rows, 1)
            total += (chosen - torch.logsumexp(block, dim=-1, keepdim=True)).sum().item()
        return total
