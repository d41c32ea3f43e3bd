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
