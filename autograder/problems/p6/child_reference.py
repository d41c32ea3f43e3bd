"""P6's reference outputs, computed in batches in one clean child (see p6/reference.py).

These are the reference solution's formulas (reference/submission: likelihood.py, sample.py)
computed the way a cache build can afford at GPT-2 small's size: one forward pass per text with
the log-softmax in float64 taken in row blocks (a 1024-token text's float64 log-probabilities
would take 400 MB at once), and, for horizon-2 temperature scaling, the model's next logits
after every surviving first token in one batched call with the prompt's cache expanded to the
batch, instead of one call per token and per temperature. The results are the reference's up to
float rounding (batched matrix products round differently in the last bits); every build is
followed by grading reference/ against them (the calibration in p6/reference.py), which must
give full marks.

Clean harnesses: they never run submission code and refuse to run where any was imported.
"""
from __future__ import annotations

from ...child.harness import assert_clean, harness
from .child import MASKED, _ids, _model, _top_k

LOG_SOFTMAX_ROWS = 16  # rows of (T, V) logits taken to float64 at a time (6 MB for GPT-2)
MASK_LEVEL = -1e9  # an output entry at or below this is masked (the grader's MASK_LEVEL)


def _log_likelihood(logits, targets) -> float:
    """sum_t log softmax(logits[t])[targets[t]] in float64; logits (T, V), targets (T,)."""
    import torch
    total = 0.0
    for start in range(0, targets.numel(), LOG_SOFTMAX_ROWS):
        block = logits[start:start + LOG_SOFTMAX_ROWS].double()  # (rows, V)
        chosen = block.gather(1, targets[start:start + LOG_SOFTMAX_ROWS, None])[:, 0]  # (rows,)
        total += float((chosen - torch.logsumexp(block, dim=1)).sum())
    return total


@harness("p6_reference_texts")
def p6_reference_texts(child, *, texts):
    """The reference log_likelihood of each token list: sum_{t>=1} log p(text_t | text_<t)."""
    import numpy as np
    import torch
    assert_clean()
    model, _ = _model(child)
    values = []
    for tokens in texts:
        ids = _ids(child, tokens)  # (1, T)
        with torch.no_grad():
            logits, _ = model(ids)  # (1, T, V): position t predicts token t + 1
        values.append(_log_likelihood(logits[0, :-1], ids[0, 1:]))
        del logits
    return np.asarray(values, dtype=np.float64)


def _sparse(row, what: str) -> dict:
    """A (V,) output as kept ids and values (> MASK_LEVEL) and the one value of every other entry."""
    import torch
    row = row.double().cpu()
    if not bool(torch.isfinite(row).all()):
        raise ValueError(f"the reference's {what} is not finite")
    kept = row > MASK_LEVEL
    masked = torch.unique(row[~kept])
    if masked.numel() > 1:
        raise ValueError(f"the reference's {what} masks entries with {masked.numel()} different values")
    return {"kept": torch.nonzero(kept).flatten().numpy(), "values": row[kept].numpy(),
            "masked": float(masked[0]) if masked.numel() else MASK_LEVEL}


@harness("p6_reference_prompts")
def p6_reference_prompts(child, *, prompts, near, temperatures, horizons):
    """For each prompt (token ids): the next-token logits around the top-k boundary (as
    p6_next_logits) and the reference temperature_scale output for every temperature in
    (None, *temperatures) and horizon in horizons, each as _sparse (a list of
    {"temperature", "horizon", "kept", "values", "masked"})."""
    import torch
    import torch.nn.functional as F
    assert_clean()
    model, config = _model(child)
    answers = []
    for tokens in prompts:
        with torch.no_grad():
            logits, past = model(_ids(child, tokens))  # (1, T, V)
            last = logits[:, -1, :]  # (1, V)
            filtered = _top_k(last, config.top_k)  # (1, V): what sample() hands temperature_scale
            row = last[0].double().cpu()
            top = torch.topk(row, config.top_k)
            outside = torch.ones_like(row, dtype=torch.bool)
            outside[top.indices] = False
            near_ids = torch.nonzero(outside & (row >= top.values[-1] - near)).flatten()
            answer = {"top_ids": top.indices.numpy(), "top_logits": top.values.numpy(),
                      "near_ids": near_ids.numpy(), "near_logits": row[near_ids].numpy(), "scaled": []}
            joint_logits = first = None
            if 2 in horizons:
                # p(t, s) = p(t) p_topk(s | t) for every surviving first token t, in one batched call
                first = torch.nonzero(filtered[0] > MASKED).flatten()  # (K,) ascending ids
                batch_past = [layer.expand(-1, first.numel(), -1, -1, -1) for layer in past]  # (2, K, H, P, D)
                following, _ = model(first[:, None], past=batch_past)  # (K, 1, V)
                following = _top_k(following[:, -1, :], config.top_k)  # (K, V)
                joint = F.softmax(filtered, dim=-1)[0, first][:, None] * F.softmax(following, dim=-1)  # (K, V)
                joint_logits = torch.log(joint + 1e-10)
            for horizon in horizons:
                for temperature in (None, *temperatures):
                    if temperature is None:
                        output = filtered[0]
                    elif horizon == 1:
                        output = filtered[0] / temperature
                    else:
                        output = torch.full_like(filtered[0], MASKED)
                        output[first] = torch.logsumexp(joint_logits / temperature, dim=-1)
                    answer["scaled"].append({"temperature": temperature, "horizon": horizon,
                                             **_sparse(output, f"temperature_scale(T={temperature}, horizon {horizon})")})
        answers.append(answer)
    return answers
