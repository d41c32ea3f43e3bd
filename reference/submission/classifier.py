"""P6e reference: tell random letters from English by GPT-2's log-likelihood."""
import torch

from submission.likelihood import log_likelihood

# With GPT-2 small, 100-character strings score about -460..-417 (random letters),
# -195..-115 (Shakespeare) and -228..-72 (NeurIPS text): any threshold between about -415
# and -230 separates them; -300 sits well inside that gap.
RANDOM_TEXT_THRESHOLD = -300.0


def classification(model, text):
    """True when text (LongTensor (1, T)) is random letters, False for English text."""
    with torch.no_grad():
        return log_likelihood(model, text) < RANDOM_TEXT_THRESHOLD
