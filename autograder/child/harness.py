"""Problem harnesses: grader-written code that runs inside the child, next to student code.

Some checks cannot send their inputs as plain data (P5 passes callables and a Generator, P6
passes the model); a harness builds those inputs in the child, calls the student's function as
often as the check needs, and returns plain data. A harness runs in the untrusted process, so
whatever it returns is judged by the grader exactly as a student's own return value would be.

Register a harness with ``@harness("name")``; the grader runs it with
``StudentProcess.harness("name", **kwargs)``.
"""
from __future__ import annotations

import sys

import numpy as np

from . import codec

_REGISTRY = {}


def harness(name: str):
    """Register ``fn(child, **kwargs)`` as the harness called ``name``."""
    def register(fn):
        _REGISTRY[name] = fn
        return fn
    return register


def run(child, name: str, kwargs: dict):
    if name not in _REGISTRY:
        raise KeyError(f"no harness named {name!r}")
    return _REGISTRY[name](child, **{k: to_native(v) for k, v in kwargs.items()})


def to_native(value):
    """Arguments from the grader as student code expects them: TensorValue becomes a torch
    tensor of the same dtype; everything else is already plain Python/numpy."""
    if isinstance(value, codec.TensorValue):
        import torch
        dtype = getattr(torch, value.dtype.replace("torch.", ""))
        return torch.as_tensor(value.array).to(dtype)
    if type(value) is list:
        return [to_native(v) for v in value]
    if type(value) is tuple:
        return tuple(to_native(v) for v in value)
    if type(value) is dict:
        return {k: to_native(v) for k, v in value.items()}
    return value


@harness("environment")
def environment(child):
    """What the child sees: used by the grader's self-tests, not by graded checks."""
    return {"python": sys.version.split()[0], "path": [p for p in sys.path if p],
            "model_dir": child.model_dir or "", "device": child.device}


# -- returned numbers, judged in the child where there are too many to send one by one ----------
def real_or_none(value):
    """``value`` as a float when it is one of the forms the course accepts for a real number (a
    Python float or int, a numpy integer or floating scalar, a 0-d ndarray or 0-d torch tensor of
    those; never a bool), else None. Mirrors the grader's ``compare.as_real``; the grader still
    checks what comes back (finite, shape), so this only decides what feedback a student gets."""
    t = type(value)
    try:
        if t is float or t is int:
            return float(value)
        if isinstance(value, np.generic) and t.__module__ == "numpy" and value.dtype.kind in "fiu":
            return float(value)
        if t is np.ndarray and value.shape == () and value.dtype.kind in "fiu":
            return float(value[()])
        torch = sys.modules.get("torch")
        if torch is not None and t is torch.Tensor and value.dim() == 0 and \
                (value.dtype.is_floating_point or not (value.dtype.is_complex or value.dtype == torch.bool)):
            return float(value.item())
    except (OverflowError, TypeError, ValueError):
        return None
    return None


def _bad(value) -> dict:
    """What feedback says about a value that is not a real number."""
    try:
        text = repr(value)
    except Exception:  # a student object whose repr fails
        text = "<unprintable>"
    return {"got": text if len(text) <= 120 else text[:119] + "…", "type": codec.describe(value)}


def _plain_scalar(value):
    """``value`` itself when the codec can send it and it is small (the grader judges it with
    compare.as_real / as_bool), else a description of it."""
    t = type(value)
    torch = sys.modules.get("torch")
    if value is None or t is bool or t is float or (t is int and value.bit_length() <= 1100) \
            or (t is str and len(value) <= 200):
        return {"value": value}
    if isinstance(value, np.generic) and t.__module__ == "numpy" and value.dtype.kind in codec.NUMERIC_KINDS:
        return {"value": value}
    if t is np.ndarray and value.size <= 16 and value.dtype.kind in codec.NUMERIC_KINDS:
        return {"value": value}
    if torch is not None and t is torch.Tensor and value.numel() <= 16 and value.layout == torch.strided:
        return {"value": value}
    return {"unsupported": _bad(value)}


# -- P4: the counterexample's callables, evaluated where the grader asks ------------------------
@harness("p4_counterexample")
def p4_counterexample(child, *, x1=()):
    """Call ``counterexample()`` and evaluate its ``mu2`` and ``sigma2`` at each point of x1, one
    Python float at a time (the promised interface is float -> float).

    Returns {"type": description of the returned value, "mapping": whether it is a dict (a dict
    subclass such as OrderedDict too), "keys": its keys (strings) when a dict,
    "mu1"/"sigma1": {"value": v} or {"unsupported": ...} or {"missing": True},
    "mu2"/"sigma2": {"values": float64 array, one per x1} or {"bad": {"x1", "got", "type"}} for
    the first value that is not a real number, or {"not_callable": description}, or
    {"missing": True}}. Finiteness and sigma2 > 0 are judged by the grader."""
    make = child.function("p4_autoregressive", "counterexample")
    model = child.invoke(make, (), {}, label="counterexample()")
    answer = {"type": codec.describe(model), "mapping": isinstance(model, dict), "keys": []}
    if not answer["mapping"]:
        return answer
    answer["keys"] = [str(key)[:40] for key in model][:20]
    points = [float(v) for v in np.asarray(x1, dtype=np.float64).reshape(-1)]
    for name in ("mu1", "sigma1"):
        answer[name] = _plain_scalar(model[name]) if name in model else {"missing": True}
    for name in ("mu2", "sigma2"):
        if name not in model:
            answer[name] = {"missing": True}
            continue
        function = model[name]
        if not callable(function):
            answer[name] = {"not_callable": codec.describe(function)}
            continue
        values = np.empty(len(points))
        for index, point in enumerate(points):
            value = child.invoke(function, (point,), {}, label=f"counterexample()['{name}']({point!r})")
            real = real_or_none(value)
            if real is None:
                answer[name] = {"bad": {"x1": point, **_bad(value)}}
                break
            values[index] = real
        else:
            answer[name] = {"values": values}
    return answer


# -- P5: many runs of a Monte Carlo estimator on a Gaussian latent model -------------------------
def gaussian_latent(s: float, t: float):
    """(sample_prior, likelihood) of z ~ N(0, s²), x | z ~ N(z, t²), with the P5 signatures
    (reference/closed_forms.py has the same model, with p(x) = N(x | 0, s² + t²), for the grader).

    Plain functions, new for each call: no bound methods (``__self__`` would lead to a model
    object), no defaults, nothing in the module's globals; their closures hold only the two
    numbers they need. Python cannot hide a function's own state from code in the same process
    (gc and frames reach it), so the P5 checks are built so that knowing s and t gains nothing:
    they judge the estimator's mean and its variance, and that its draws come from the rng passed
    in; the closed-form p(x) alone fails them (tests/test_p5_mutants.py tries)."""
    scale, inverse_two_variance = float(s), 1.0 / (2.0 * float(t) ** 2)
    normaliser = float(1.0 / np.sqrt(2.0 * np.pi * float(t) ** 2))

    def sample_prior(k, rng):
        """k iid draws from the prior p(z), from the numpy Generator rng."""
        return rng.normal(0.0, scale, size=k)

    def likelihood(x, z):
        """p(x | z_j) for each draw z_j (elementwise over z)."""
        z = np.asarray(z, dtype=np.float64)
        return normaliser * np.exp(-((x - z) ** 2) * inverse_two_variance)

    return sample_prior, likelihood


@harness("p5_estimates")
def p5_estimates(child, *, function, s, t, x, k, runs, rng_seed):
    """``runs`` calls of ``submission.p5_monte_carlo.<function>(x, k, sample_prior, likelihood,
    rng)`` on the model gaussian_latent(s, t), all with the one Generator
    ``np.random.default_rng(rng_seed)`` (successive runs get independent draws).

    Returns {"values": float64 array of runs} or {"bad": {"run", "got", "type"}} for the first
    return value that is not a real number. Non-finite values are returned as they are."""
    estimator = child.function("p5_monte_carlo", function)
    sample_prior, likelihood = gaussian_latent(s, t)
    rng = np.random.default_rng(rng_seed)
    label = f"{function}(x={x!r}, k={k!r}, sample_prior, likelihood, rng)"
    values = np.empty(int(runs))
    for run in range(int(runs)):
        value = child.invoke(estimator, (x, k, sample_prior, likelihood, rng), {}, label=label)
        real = real_or_none(value)
        if real is None:
            return {"bad": {"run": run, **_bad(value)}}
        values[run] = real
    return {"values": values}
