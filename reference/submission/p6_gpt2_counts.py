"""P6a, P6b, P6g reference: counting answers about GPT-2."""


def bits_per_token(vocab_size):
    """Bits of a fixed-length binary code for one of vocab_size tokens: ceil(log2 V), exact in
    integers ((V - 1).bit_length() is the number of bits of the largest index V - 1)."""
    vocab_size = int(vocab_size)
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    return (vocab_size - 1).bit_length()


def added_parameters(old_vocab, new_vocab, d_model, *, tied_embeddings, output_bias):
    """Parameters added when the vocabulary grows from old_vocab to new_vocab tokens.

    The input embedding gains (V' - V) d; an untied output layer gains another (V' - V) d; an
    output bias gains V' - V entries.
    """
    extra = int(new_vocab) - int(old_vocab)
    d_model = int(d_model)
    added = extra * d_model  # embedding rows
    if not tied_embeddings:
        added += extra * d_model  # output-layer rows
    if output_bias:
        added += extra
    return added


def per_token_temperature_matches_joint():
    """Does dividing each step's logits by T sample whole sequences from p(x)^(1/T) / Z? No:
    each step's normaliser sum_x p(x_i | x_<i)^(1/T) depends on the prefix, and it does not
    cancel in the product over steps."""
    return False
