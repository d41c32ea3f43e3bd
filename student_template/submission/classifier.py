import torch
from submission.likelihood import log_likelihood


def classification(model, text):
    """True when the 100-character string `text` (LongTensor (1, T)) is random letters, False for
    Shakespeare or NeurIPS paper text: a threshold on log_likelihood."""
    with torch.no_grad():
        raise NotImplementedError
