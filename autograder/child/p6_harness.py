"""P6 harnesses: GPT-2 sampling, temperature and log-likelihood, run inside the child.

The grader sends token ids as plain lists; a harness builds the tensors on the child's device,
runs the course model (``child.model()``) where an input needs it (the logits and cache of a
prompt), calls the student's function as the course's starter code would, and returns plain
data. Two kinds:

- student harnesses (``p6_log_likelihood``, ``p6_sample`` …) call submission code, so what they
  return is judged like any student return value;
- clean harnesses (``p6_config``, ``p6_next_logits``, ``p6_replay_support``) never touch
  submission code and refuse to run in a process that has imported any: the grader runs them in
  a fresh child (``clean_process`` fixture) and trusts their answers, e.g. to replay a
  student's sampled tokens through the model.

The top-k filter applied to a prompt's logits before ``temperature_scale`` is the grader's own
(``_top_k``, the course's ``top_k_logits``), never the student's.
"""
from __future__ import annotations

import sys

from . import codec
from .harness import _bad, _plain_scalar, harness

MASKED = -1e10  # the course's value for a filtered-out logit (exact in float32)


# -- helpers ---------------------------------------------------------------------------------
def _assert_clean():
    """Clean harnesses promise an answer that no student code could influence."""
    loaded = [name for name in sys.modules if name == "submission" or name.startswith("submission.")]
    if loaded:
        raise RuntimeError(f"a clean harness ran in a process that imported student code ({loaded[0]})")


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
    from .main import StudentFailure  # imported here: main imports this module
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


# -- clean harnesses (no student code) --------------------------------------------------------
@harness("p6_config")
def p6_config(child):
    """The model's config as the student's code sees it (sizes, top_k, seed)."""
    _assert_clean()
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
    _assert_clean()
    model, config = _model(child)
    answers = []
    for tokens in prompts:
        with torch.no_grad():
            logits, _ = model(_ids(child, tokens))
        last = logits[0, -1].double().cpu()  # (V,)
        top = torch.topk(last, config.top_k)
        outside = torch.ones_like(last, dtype=torch.bool)
        outside[top.indices] = False
        near_ids = torch.nonzero(outside & (last >= top.values[-1] - near)).flatten()
        answers.append({"top_ids": top.indices.numpy(), "top_logits": top.values.numpy(),
                        "near_ids": near_ids.numpy(), "near_logits": last[near_ids].numpy()})
    return answers


@harness("p6_replay_support")
def p6_replay_support(child, *, sequences, starts):
    """Replay sampled sequences through the model, without a cache.

    For sequence s with prompt length starts[i], each generated step j (token s[T0 + j]) gets
    the logit the model gives that token after s[:T0 + j], the k-th largest logit there, and
    the token's rank (0 = most likely). Returns, per sequence, {"logit", "kth", "rank"} arrays.
    """
    import torch
    _assert_clean()
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


# -- student harnesses --------------------------------------------------------------------------
@harness("p6_log_likelihood")
def p6_log_likelihood(child, *, texts):
    """log_likelihood(model, text) for each token list, text a LongTensor (1, T) on the model's
    device. Returns one {"value": v} (v as returned, if a small plain value), {"unsupported": ...}
    or {"error": ...} per text."""
    function = child.function("likelihood", "log_likelihood")
    model, _ = _model(child)
    return [_attempt(lambda: _plain_scalar(child.invoke(function, (model, _ids(child, tokens)), {},
                                                        label=f"log_likelihood(model, text of {len(tokens)} tokens)")))
            for tokens in texts]


@harness("p6_classification")
def p6_classification(child, *, texts):
    """classification(model, text) for each token list; one {"value": v}, {"unsupported": ...}
    or {"error": ...} per text."""
    function = child.function("classifier", "classification")
    model, _ = _model(child)
    return [_attempt(lambda: _plain_scalar(child.invoke(function, (model, _ids(child, tokens)), {},
                                                        label=f"classification(model, text of {len(tokens)} tokens)")))
            for tokens in texts]


@harness("p6_classification_stubbed")
def p6_classification_stubbed(child, *, values, text):
    """classification(model, text) with the student's log_likelihood replaced by a stub that
    returns values[i] in call i: every module attribute bound to the submission's
    log_likelihood (``submission.likelihood.log_likelihood`` and the name
    ``from submission.likelihood import log_likelihood`` binds in the classifier) is patched.

    Returns one {"answer": plain value, "calls": how often the stub ran} per value.
    """
    classification = child.function("classifier", "classification")
    original = child.function("likelihood", "log_likelihood")
    model, _ = _model(child)
    ids = _ids(child, text)
    patched = [module for name, module in list(sys.modules.items())
               if (name == "submission" or name.startswith("submission.")) and module is not None
               and getattr(module, "log_likelihood", None) is original]
    answers = []
    for value in values:
        calls = []

        def stub(model_, text_, *args, _value=float(value), **kwargs):
            calls.append(1)
            return _value
        for module in patched:
            module.log_likelihood = stub
        try:
            answer = child.invoke(classification, (model, ids), {},
                                  label=f"classification(model, text) with log_likelihood returning {value!r}")
        finally:
            for module in patched:
                module.log_likelihood = original
        answers.append({"answer": _plain_scalar(answer), "calls": len(calls)})
    return answers


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
def p6_sample_next_tokens(child, *, prompt, temperature, draws, rng_seed=None):
    """``draws`` calls of sample(model, start_text, config, 1, temperature=T) on one prompt.

    Returns {"tokens": int64 array of the drawn next tokens} or, for the first return value
    that is not a LongTensor (1, T0 + 1) starting with the prompt, {"bad": {"draw", "got",
    "type", "why"}}.
    """
    import numpy as np
    import torch
    function = child.function("sample", "sample")
    model, config = _model(child)
    _reseed(child, rng_seed)
    start = _ids(child, prompt)
    expected_prefix = start[0].cpu()
    label = f"sample(model, start_text, config, 1, temperature={temperature!r})"
    tokens = np.empty(int(draws), dtype=np.int64)
    for draw in range(int(draws)):
        out = child.invoke(function, (model, start, config, 1), {"temperature": temperature}, label=label)
        why = None
        if type(out) is not torch.Tensor:
            why = "not a torch tensor"
        elif out.dtype != torch.long:
            why = f"dtype {out.dtype}, not torch.int64 (a LongTensor)"
        elif tuple(out.shape) != (1, len(prompt) + 1):
            why = f"shape {tuple(out.shape)}, not (1, {len(prompt) + 1})"
        elif not torch.equal(out[0, :-1].cpu(), expected_prefix):
            why = "it does not start with start_text"
        if why is not None:
            return {"bad": {"draw": draw, "why": why, **_bad(out)}}
        tokens[draw] = int(out[0, -1])
    return {"tokens": tokens}
