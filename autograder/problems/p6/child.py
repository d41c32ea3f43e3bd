"""P6 harnesses: GPT-2 sampling, temperature and log-likelihood, run inside the child.

The grader sends token ids as plain lists; a harness builds the tensors on the child's device,
runs the course model (``child.model()``) where an input needs it (the logits and cache of a
prompt), calls the student's function as the course's starter code would, and returns plain
data. Two kinds:

- student harnesses (``p6_log_likelihood``, ``p6_sample`` …) call submission code, so what they
  return is judged like any student return value;
- clean harnesses (``p6_config``, ``p6_next_logits``, ``p6_replay_support``,
  ``p6_second_step_logits``, ``p6_log_likelihood_variants``, ``p6_horizon_two_variants``) never touch
  submission code and refuse to run in a process that has imported any: the grader runs them in
  a fresh child (``clean_process`` fixture) and trusts their answers, e.g. to replay a
  student's sampled tokens through the model.

The top-k filter applied to a prompt's logits before ``temperature_scale`` is the grader's own
(``_top_k``, the course's ``top_k_logits``), never the student's.
"""
from __future__ import annotations

import sys

from ...child import codec
from ...child.harness import StudentFailure, _bad, _plain_scalar, harness

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
        answers.append(_near_top(logits[0, -1].double().cpu(), config.top_k, near))
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


def _near_top(last, k: int, near: float) -> dict:
    """top_ids/top_logits (the k largest of last (V,), float64, largest first) and near_ids/
    near_logits (every other token within ``near`` of the k-th), as p6_next_logits gives them."""
    import torch
    top = torch.topk(last, k)
    outside = torch.ones_like(last, dtype=torch.bool)
    outside[top.indices] = False
    near_ids = torch.nonzero(outside & (last >= top.values[-1] - near)).flatten()
    return {"top_ids": top.indices.numpy(), "top_logits": top.values.numpy(),
            "near_ids": near_ids.numpy(), "near_logits": last[near_ids].numpy()}


def _after_each_first_token(child, prompt, first_tokens):
    """(prompt's last-position logits (V,), next logits (K, V) after prompt + [t] for each first
    token t): one forward of the prompt, then one batched forward of all first tokens with the
    prompt's cache expanded to batch K (the cache is only read)."""
    import torch
    model, _ = _model(child)
    with torch.no_grad():
        logits, past = model(_ids(child, prompt))
        firsts = torch.tensor([[int(t)] for t in first_tokens], dtype=torch.long, device=child.device)  # (K, 1)
        batch_past = [layer.expand(-1, firsts.size(0), -1, -1, -1) for layer in past]
        next_logits, _ = model(firsts, past=batch_past)  # (K, 1, V)
    return logits[0, -1].double().cpu(), next_logits[:, -1].double().cpu()


@harness("p6_second_step_logits")
def p6_second_step_logits(child, *, prompt, first_tokens, near):
    """For each first token t, the model's logits for the token after prompt + [t], around the
    top-k boundary (as p6_next_logits: top_ids, top_logits, near_ids, near_logits)."""
    _assert_clean()
    _, config = _model(child)
    _, after = _after_each_first_token(child, prompt, first_tokens)
    return [_near_top(row, config.top_k, near) for row in after]


@harness("p6_log_likelihood_variants")
def p6_log_likelihood_variants(child, *, tokens):
    """What known mistakes give as log_likelihood on one text (float64 unless named otherwise):
    "right" the sum of log p(text_t | text_<t), t ≥ 1; "averaged"; "last_term_dropped";
    "first_term_dropped"; "shifted" (the logits at position t scored against token t);
    "first_token_included" (<|endoftext|>, id V − 1, put before the text, all T terms; absent when
    the text fills the context); "raw_logits" (logits summed, no log-softmax); "float16" (the
    log-softmax and the sum in float16)."""
    import torch
    import torch.nn.functional as F
    _assert_clean()
    model, config = _model(child)
    ids = _ids(child, tokens)  # (1, T)
    targets = ids[0, 1:, None]  # (T - 1, 1)
    with torch.no_grad():
        logits = model(ids)[0][0]  # (T, V) float32
        log_probs = F.log_softmax(logits.double(), dim=-1)
        terms = log_probs[:-1].gather(1, targets)[:, 0]  # (T - 1,)
        variants = {
            "right": terms.sum(), "averaged": terms.mean(), "last_term_dropped": terms[:-1].sum(),
            "first_term_dropped": terms[1:].sum(), "shifted": log_probs[1:].gather(1, targets).sum(),
            "raw_logits": logits[:-1].double().gather(1, targets).sum(),
            "float16": F.log_softmax(logits[:-1].half(), dim=-1).gather(1, targets).sum(),
        }
        if ids.size(1) < config.n_positions:
            eot = torch.full((1, 1), config.vocab_size - 1, dtype=torch.long, device=child.device)
            with_eot = F.log_softmax(model(torch.cat([eot, ids], dim=1))[0][0, :-1].double(), dim=-1)
            variants["first_token_included"] = with_eot.gather(1, ids[0, :, None]).sum()
    return {name: float(value) for name, value in variants.items()}


@harness("p6_horizon_two_variants")
def p6_horizon_two_variants(child, *, prompt, temperature):
    """temperature_scale at horizon 2 as known mistakes compute it, on the tokens that survive the
    prompt's top-k (float64): "right"; "horizon_one" (logits / T); "temperature_outside"
    (logsumexp(joint) / T); "no_second_top_k" (the second step unfiltered); "temperature_ignored"
    (logsumexp(joint)); "temperature_multiplied" (logsumexp(joint · T)); "no_first_probability"
    (p(t) left out of the joint); "no_epsilon" (log p(t, s) without + 1e-10, so only the second
    step's survivors count). Returns {"ids": the surviving tokens, name: values at them}."""
    import torch
    import torch.nn.functional as F
    _assert_clean()
    _, config = _model(child)
    last = _top_k(_model_last_logits(child, prompt), config.top_k)[0]  # (V,) float32 filtered
    first_tokens = torch.nonzero(last > MASKED).flatten()
    _, after = _after_each_first_token(child, prompt, first_tokens.tolist())  # (K, V) float64
    first = F.softmax(last.double(), dim=-1)[first_tokens][:, None]  # (K, 1)
    filtered = _top_k(after, config.top_k)
    second, unfiltered = F.softmax(filtered, dim=-1), F.softmax(after, dim=-1)  # (K, V)
    t = float(temperature)

    def lse(values):
        return torch.logsumexp(values, dim=-1)
    joint = torch.log(first * second + 1e-10)
    kept = filtered > MASKED
    variants = {
        "right": lse(joint / t), "horizon_one": last.double()[first_tokens] / t, "temperature_outside": lse(joint) / t,
        "no_second_top_k": lse(torch.log(first * unfiltered + 1e-10) / t), "temperature_ignored": lse(joint),
        "temperature_multiplied": lse(joint * t), "no_first_probability": lse(torch.log(second + 1e-10) / t),
        "no_epsilon": lse(torch.where(kept, torch.log(first * second) / t, torch.full_like(joint, -torch.inf))),
    }
    return {"ids": first_tokens.cpu().numpy(), **{name: value.cpu().numpy() for name, value in variants.items()}}


def _model_last_logits(child, prompt):
    """The model's last-position logits (1, V) float32 on a prompt."""
    import torch
    model, _ = _model(child)
    with torch.no_grad():
        return model(_ids(child, prompt))[0][:, -1, :]


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
