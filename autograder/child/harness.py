"""Problem harnesses: grader-written code that runs inside the child, next to student code.

Some checks cannot send their inputs as plain data (P5 passes callables and a Generator, P6
passes the model); a harness builds those inputs in the child, calls the student's function as
often as the check needs, and returns plain data. A harness runs in the untrusted process, so
whatever it returns is judged by the grader exactly as a student's own return value would be.

Each problem keeps its harnesses in its own folder (``autograder/problems/<problem>/child.py``,
declared in the problem's ``harness_modules``); they register with ``@harness("name")`` and the
grader runs them with ``ChildProcess.harness("name", **kwargs)``. This module holds the registry
and the helpers every problem's harnesses share.
"""
from __future__ import annotations

import sys

import numpy as np

from . import codec

_REGISTRY = {}


class StudentFailure(Exception):
    """Student code could not be imported, found or run; ``info`` is the error response."""

    def __init__(self, info: dict):
        super().__init__(info.get("message", ""))
        self.info = info


def assert_clean(what: str = "a clean harness") -> None:
    """Raise unless this process never imported student code: what clean harnesses promise (an
    answer no student code could influence), and where the grader's clean modules may load."""
    loaded = [name for name in sys.modules if name == "submission" or name.startswith("submission.")]
    if loaded:
        raise RuntimeError(f"{what} ran in a process that imported student code ({loaded[0]})")


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
