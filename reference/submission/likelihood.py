"""P6d reference: the log-likelihood of a text under GPT-2."""
import torch
import torch.nn.functional as F


def log_likelihood(model, text):
    """sum_{t>=1} log p(text_t | text_<t) for text a LongTensor (1, T), as a Python float.

    The first token's own probability is left out (the model has no context to predict it).
    The log-softmax is taken in float64 so the reference adds no rounding of its own.
    """
    with torch.no_grad():
        logits, _ = model(text)  # (1, T, V); position t predicts token t + 1
        log_probs = F.log_softmax(logits[0, :-1].double(), dim=-1)  # (T-1, V)
        targets = text[0, 1:]  # (T-1,)
        return log_probs.gather(1, targets[:, None]).sum().item()
