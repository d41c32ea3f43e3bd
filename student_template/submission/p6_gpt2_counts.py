"""P6 (a, b, g): questions about GPT-2 answered with numbers and booleans."""


def bits_per_token(vocab_size):
    """Bits of a fixed-length binary code for one token of a vocabulary of this size (an int)."""
    raise NotImplementedError


def added_parameters(old_vocab, new_vocab, d_model, *, tied_embeddings, output_bias):
    """Parameters added when the vocabulary grows from old_vocab to new_vocab (an int)."""
    raise NotImplementedError


def per_token_temperature_matches_joint():
    """Does dividing each step's logits by T sample whole sequences from p(x)^(1/T) / Z? (a bool)"""
    raise NotImplementedError
