"""Comparison helpers shared by every problem's checks, and the feedback they produce.

A check never compares values itself: it calls one of these, which raise ``CheckFailed`` with
feedback that names the call, the input, what was expected, what came back and a hint.
Values arrive from the child already decoded (``codec``): plain Python, numpy, or TensorValue.
"""
from __future__ import annotations

import numpy as np

from .child.codec import TensorValue, describe

_INT_TYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)


class CheckFailed(AssertionError):
    """A wrong answer; ``str(error)`` is the feedback shown to the student."""


def short(value, limit: int = 160) -> str:
    """A value as feedback shows it, cut to ``limit`` characters."""
    text = repr(value.array if isinstance(value, TensorValue) else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def feedback(*, call: str, expected: str, got: str, hint: str = "", instance: str = "") -> str:
    """The standard wording of a wrong answer."""
    lines = [f"{call} returned {got}", f"expected {expected}"]
    if instance:
        lines.insert(0, f"On {instance}:")
    if hint:
        lines.append(f"Hint: {hint}")
    return "\n".join(lines)


def expect_exact_int(value, expected: int, *, call: str, hint: str = "", instance: str = "") -> None:
    """Pass when ``value`` is an exact int (Python int or numpy integer, never bool or float)
    equal to ``expected``; numbers beyond 2**63 must be Python ints to be right."""
    t = type(value)
    if t is not int and t not in _INT_TYPES:
        extra = " (a count must be an exact int, not a float: use integer arithmetic such as math.prod)" \
            if t is float or t is np.float64 else " (a count must be an int, not a bool)" if t is bool else ""
        raise CheckFailed(feedback(call=call, got=f"{short(value)}, {describe(value)}{extra}",
                                   expected=f"the int {expected}", hint=hint, instance=instance))
    if int(value) != expected:
        raise CheckFailed(feedback(call=call, got=f"{int(value)}", expected=f"{expected}", hint=hint, instance=instance))
