"""P6e's fallback harness, run inside the child: classification judged by its decisions on
chosen log-likelihoods, with stand-ins for the submission's log_likelihood and for the course
model (``p6_classification_stubbed``). See the p6e check's docstring for why."""
from __future__ import annotations

import sys

from ...child.harness import _plain_scalar, harness
from .child import _attempt, _ids, _model


def _like_returned(example, value: float):
    """``value`` in the form ``example`` (what the submission's own log_likelihood returned) has: a
    Python float, a numpy floating scalar, or a one-element tensor of its dtype, shape and device;
    a 0-d float64 tensor when example is none of these (its log_likelihood failed or returned
    something else). Every accepted log_likelihood returns one of these, and classification code
    written for it (``.item()``, ``float()``, comparisons) works on the stand-in too."""
    import numpy as np
    import torch
    if type(example) is float:
        return float(value)
    if isinstance(example, np.floating) and type(example).__module__ == "numpy":
        return type(example)(value)
    if type(example) is torch.Tensor and example.numel() == 1 and example.dtype.is_floating_point:
        return torch.full(tuple(example.shape), value, dtype=example.dtype, device=example.device)
    return torch.tensor(value, dtype=torch.float64, device=example.device if type(example) is torch.Tensor else None)


def _log_likelihood_stand_in(original, make_value, calls: list, *, model, text):
    """A function that takes the place of the submission's log_likelihood: called as that one can
    be (the same parameters, by position or keyword; a call that does not fit raises the TypeError
    Python would), it counts its calls and returns make_value() when given ``model`` and ``text``
    (the classifier's own arguments, in their places); any other call (arguments swapped, a part of
    the text) gets what the submission's own log_likelihood gives for it. It carries the original's
    name and docstring, so nothing of the grader shows in a message."""
    import functools
    import inspect
    import torch
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None

    def log_likelihood(*args, **kwargs):
        given = list(signature.bind(*args, **kwargs).arguments.values()) if signature is not None else list(args)
        calls.append(1)
        if (len(given) >= 2 and given[0] is model and type(given[1]) is torch.Tensor
                and given[1].shape == text.shape and torch.equal(given[1].detach().cpu(), text.cpu())):
            return make_value()
        return original(*args, **kwargs)
    functools.update_wrapper(log_likelihood, original)
    del log_likelihood.__wrapped__
    return log_likelihood


def _text_model(model, config, tokens, value: float, calls: list):
    """A stand-in for the course model under which the text ``tokens`` has log-likelihood
    ``value`` (< 0) exactly: at every position that follows the text (the input token and its
    position match it), the next text token gets log-probability value / (T − 1), every other
    token the same lower logit; elsewhere the logits are uniform. Same call and outputs as the
    course model (logits (B, T, V) float32 on its device; presents one [2, B, n_head, P + T,
    head_dim] tensor per layer, zeros), same config and device. Used to judge a classification that
    computes the log-likelihood itself instead of calling log_likelihood."""
    import math
    import torch
    device = next(model.parameters()).device
    text = torch.tensor(list(tokens), dtype=torch.long, device=device)
    per_step = float(value) / (len(tokens) - 1)  # log p(text_t | text_<t) for every t ≥ 1
    # softmax puts e^a / (e^a + V − 1) on the target when it has logit a and the others 0
    target_logit = per_step + math.log(config.vocab_size - 1) - math.log(-math.expm1(per_step))
    head_dim = config.n_embd // config.n_head

    class CourseModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = config
            self.anchor = torch.nn.Parameter(torch.zeros(1, device=device), requires_grad=False)

        def forward(self, input_ids, past=None):
            calls.append(1)
            batch, length = input_ids.shape
            start = 0 if past is None else int(past[0][0].size(-2))
            logits = torch.zeros(batch, length, config.vocab_size, device=device)
            positions = torch.arange(start, start + length, device=device)
            inside = positions + 1 < text.numel()  # positions whose next token is a text token
            for b in range(batch):
                follows = inside & (input_ids[b].to(device) == text[positions.clamp(max=text.numel() - 1)])
                where = torch.nonzero(follows).flatten()
                logits[b, where, text[positions[where] + 1]] = target_logit
            presents = [torch.zeros((), device=device).expand(2, batch, config.n_head, start + length, head_dim)
                        for _ in range(config.n_layer)]
            return logits, presents

    return CourseModel().eval()


@harness("p6_classification_stubbed")
def p6_classification_stubbed(child, *, values, text):
    """classification(model, text) once per value v, where text's log-likelihood is v either way
    the classifier can learn it:

    - every module attribute bound to the submission's log_likelihood
      (``submission.likelihood.log_likelihood`` and the name ``from submission.likelihood import
      log_likelihood`` binds in the classifier) is replaced by a stand-in that returns v in the
      form the submission's own log_likelihood returns (``_like_returned``) when called with the
      classifier's model and text (``_log_likelihood_stand_in``; other calls get what the
      submission's own function gives);
    - the model passed is ``_text_model``: a classifier that computes the log-likelihood itself
      from the model's logits gets v too.

    Returns one {"answer": plain value or {"error": ...}, "calls": calls of the stand-in,
    "model_calls": calls of the model} per value.
    """
    import torch
    classification = child.function("classifier", "classification")
    original = child.function("likelihood", "log_likelihood")
    model, config = _model(child)
    ids = _ids(child, text)
    try:
        with torch.no_grad():
            example = original(model, ids)  # only its form is used: the stand-in returns values like it
    except BaseException:  # a broken log_likelihood: the stand-in returns a 0-d float64 tensor
        example = None
    patched = [module for name, module in list(sys.modules.items())
               if (name == "submission" or name.startswith("submission.")) and module is not None
               and getattr(module, "log_likelihood", None) is original]
    answers = []
    for value in values:
        calls, model_calls = [], []
        text_model = _text_model(model, config, text, float(value), model_calls)
        stand_in = _log_likelihood_stand_in(original, lambda v=float(value): _like_returned(example, v), calls,
                                            model=text_model, text=ids)
        for module in patched:
            module.log_likelihood = stand_in
        try:
            answer = _attempt(lambda: _plain_scalar(child.invoke(
                classification, (text_model, ids), {},
                label=f"classification(model, text) on a text whose log-likelihood is {float(value):.2f}")))
        finally:
            for module in patched:
                module.log_likelihood = original
        answers.append({"answer": answer, "calls": len(calls), "model_calls": len(model_calls)})
    return answers
