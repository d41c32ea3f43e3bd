"""P6 harnesses: GPT-2 sampling, temperature and log-likelihood, run inside the child.

The grader sends token ids as plain lists; a harness builds the tensors on the child's device,
runs the course model (``child.model()``) where an input needs it (the logits and cache of a
prompt), calls the student's function as the course's starter code would, and returns plain
data. Two kinds:

- student harnesses (``p6_log_likelihood``, ``p6_sample`` …) call submission code, so what they
  return is judged like any student return value;
- clean harnesses (child_clean.py, child_reference.py) never touch submission code and refuse to
  run in a process that has imported any: the grader runs them in a fresh child
  (``clean_process`` fixture) and trusts their answers, e.g. to replay a student's sampled
  tokens through the model. Only clean children have them (student code must not read the
  reference's formulas); the helpers here (``_model``, ``_top_k``, …) serve both kinds.

The top-k filter applied to a prompt's logits before ``temperature_scale`` is the grader's own
(``_top_k``, the course's ``top_k_logits``), never the student's.
"""
from __future__ import annotations

from ...child import codec
from ...child.harness import StudentFailure, _bad, _plain_scalar, harness

MASKED = -1e10  # the course's value for a filtered-out logit (exact in float32)


# -- helpers ---------------------------------------------------------------------------------
SMALL_MODEL = 1024  # n_embd * n_layer at or below which CPU runs use one thread (the tiny model: 128)


def _model(child):
    """(model, config) from child.model(). On the CPU, a model as small as the tiny one runs on one
    thread: its matrices are too small to gain from more, and its many tiny ops make spinning
    OpenMP threads collapse on a busy machine (grading the reference's P6 on 2 loaded cores
    took 3 min 46 s with 2 threads, 14 s with 1)."""
    import torch
    model, config = child.model()
    if child.device == "cpu" and config.n_embd * config.n_layer <= SMALL_MODEL and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return model, config


def _ids(child, tokens):
    """A LongTensor (1, T) of token ids on the child's device."""
    import torch
    return torch.tensor([list(tokens)], dtype=torch.long, device=child.device)


def _top_k(logits, k: int):
    """The course's top_k_logits: entries of logits (B, V) below the row's k-th largest become
    -1e10; ties at the k-th value are kept."""
    import torch
    kth = torch.topk(logits, k).values[:, -1:]  # (B, 1)
    return torch.where(logits < kth, torch.full_like(logits, MASKED), logits)


def _prompt_state(child, tokens):
    """(top-k filtered last-position logits (1, V), presents) of the model on a prompt."""
    import torch
    model, config = _model(child)
    with torch.no_grad():
        logits, past = model(_ids(child, tokens))  # (1, T, V)
    return _top_k(logits[:, -1, :], config.top_k), past


def _reseed(child, seed):
    """Seed again once torch is imported: the child seeds a request before the harness runs,
    when a fresh child has not imported torch yet."""
    if seed is not None:
        child.seed(int(seed))


def _attempt(run) -> dict:
    """run()'s answer for one item, or {"error": info} when student code failed on it, so that a
    failure on one item does not hide the verdicts on the items before it."""
    try:
        return run()
    except StudentFailure as failure:
        return {"error": failure.info}


def _tensor_or_bad(value) -> dict:
    """{"value": v} for a tensor or ndarray (the grader judges dtype, shape and entries),
    else {"unsupported": description}."""
    import numpy as np
    import torch
    if type(value) is torch.Tensor and value.layout == torch.strided and value.numel() <= 1 << 24:
        return {"value": value}
    if type(value) is np.ndarray and value.dtype.kind in codec.NUMERIC_KINDS and value.size <= 1 << 24:
        return {"value": value}
    return {"unsupported": _bad(value)}


# -- student harnesses --------------------------------------------------------------------------
def _scalar_per_text(child, module: str, name: str, texts) -> list:
    """name(model, text) of the student's ``module`` for each token list, text a LongTensor (1, T)
    on the model's device: one {"value": v} (v as returned, if a small plain value),
    {"unsupported": ...} or {"error": ...} per text."""
    function = child.function(module, name)
    model, _ = _model(child)
    return [_attempt(lambda: _plain_scalar(child.invoke(function, (model, _ids(child, tokens)), {},
                                                        label=f"{name}(model, text of {len(tokens)} tokens)")))
            for tokens in texts]


@harness("p6_log_likelihood")
def p6_log_likelihood(child, *, texts):
    """log_likelihood(model, text) for each token list (see _scalar_per_text)."""
    return _scalar_per_text(child, "likelihood", "log_likelihood", texts)


@harness("p6_classification")
def p6_classification(child, *, texts):
    """classification(model, text) for each token list (see _scalar_per_text)."""
    return _scalar_per_text(child, "classifier", "classification", texts)


@harness("p6_temperature_scale")
def p6_temperature_scale(child, *, cases):
    """temperature_scale(logits, model, new_past, config, temperature, temperature_horizon)
    for each case {"prompt": token ids, "temperature": T or None, "horizon": 1 or 2}, where
    logits (1, V) are the model's last-position logits on the prompt after the course's top-k
    filter and new_past the cache after the prompt, as sample() would pass them.
    Returns one {"value": tensor}, {"unsupported": ...} or {"error": ...} per case."""
    function = child.function("sample", "temperature_scale")
    model, config = _model(child)
    answers = []
    for case in cases:
        logits, past = _prompt_state(child, case["prompt"])
        temperature, horizon = case["temperature"], case["horizon"]
        label = f"temperature_scale(logits, model, new_past, config, {temperature!r}, {horizon!r})"
        answers.append(_attempt(lambda: _tensor_or_bad(child.invoke(
            function, (logits, model, past, config, temperature, horizon), {}, label=label))))
    return answers


@harness("p6_sample")
def p6_sample(child, *, cases, rng_seed=None):
    """sample(model, start_text, config, length, temperature=T) for each case {"prompt",
    "length", "temperature"}, start_text a LongTensor (1, T0) on the model's device.
    Returns one {"value": tensor} or {"unsupported": ...} per case, as returned."""
    function = child.function("sample", "sample")
    model, config = _model(child)
    _reseed(child, rng_seed)
    answers = []
    for case in cases:
        label = f"sample(model, start_text, config, {case['length']}, temperature={case['temperature']!r})"
        answers.append(_tensor_or_bad(child.invoke(
            function, (model, _ids(child, case["prompt"]), config, case["length"]),
            {"temperature": case["temperature"]}, label=label)))
    return answers


@harness("p6_sample_next_tokens")
def p6_sample_next_tokens(child, *, prompt, temperature, draws, rng_seed=None, length=1):
    """``draws`` calls of sample(model, start_text, config, length, temperature=T) on one prompt.

    Returns {"tokens": int64 array of the drawn tokens, (draws,) for length 1, else (draws,
    length)} or, for the first return value that is not a LongTensor (1, T0 + length) starting
    with the prompt, {"bad": {"draw", "got", "type", "why"}}.
    """
    import numpy as np
    import torch
    function = child.function("sample", "sample")
    model, config = _model(child)
    _reseed(child, rng_seed)
    start = _ids(child, prompt)
    expected_prefix = start[0].cpu()
    label = f"sample(model, start_text, config, {length}, temperature={temperature!r})"
    tokens = np.empty((int(draws), int(length)), dtype=np.int64)
    for draw in range(int(draws)):
        out = child.invoke(function, (model, start, config, length), {"temperature": temperature}, label=label)
        why = None
        if type(out) is not torch.Tensor:
            why = "not a torch tensor"
        elif out.dtype != torch.long:
            why = f"dtype {out.dtype}, not torch.int64 (a LongTensor)"
        elif tuple(out.shape) != (1, len(prompt) + length):
            why = f"shape {tuple(out.shape)}, not (1, {len(prompt) + length})"
        elif not torch.equal(out[0, :len(prompt)].cpu(), expected_prefix):
            why = "it does not start with start_text"
        if why is not None:
            return {"bad": {"draw": draw, "why": why, **_bad(out)}}
        tokens[draw] = out[0, len(prompt):].cpu().numpy()
    return {"tokens": tokens[:, 0] if length == 1 else tokens}


@harness("p6_top_k")
def p6_top_k(child, *, cases):
    """top_k_logits(logits, k) for each case {"logits": float32 array (1, V), "k": int}, logits a
    float32 tensor on the child's device. Returns one {"value": tensor}, {"unsupported": ...} or
    {"error": ...} per case."""
    import torch
    function = child.function("sample", "top_k_logits")
    answers = []
    for case in cases:
        logits = torch.as_tensor(case["logits"], dtype=torch.float32).to(child.device)
        answers.append(_attempt(lambda: _tensor_or_bad(child.invoke(
            function, (logits, int(case["k"])), {}, label=f"top_k_logits(logits, {int(case['k'])})"))))
    return answers
