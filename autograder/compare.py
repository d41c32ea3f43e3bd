"""Comparison helpers shared by every problem's checks, and the feedback they produce.

A check never compares values itself: it calls one of these, which raise ``CheckFailed`` with
feedback that names the call, the input, what was expected, what came back and a hint.
Values arrive from the child already decoded (``codec``): plain Python, numpy, or TensorValue.

- Hints that look at the student's value: ``BestEffortHint`` (worked out only when an answer is
  wrong; a hint that raises falls back to the generic one, see its docstring) and
  ``plain_count`` (a returned count as an int or float, or None, for known-mistake code to compare).
- Accepted forms: ``as_real`` (float, int, numpy scalar, 0-d array or tensor; never bool; NaN
  and infinities refused), ``as_bool`` (bool, numpy bool, 0-d bool array or tensor),
  ``as_array`` (ndarray or tensor of the exact shape, finite), ``expect_exact_int`` (counts).
- Numbers: ``expect_close`` (entrywise ``|got − expected| ≤ atol + rtol·|expected|`` in
  float64, the caller states rtol and atol; or ``atol + rtol·scale`` with a ``scale`` the caller
  computes, for a result much smaller than the terms it is computed from) and
  ``expect_close_up_to_shift`` (the same after removing a shift common to all rows, for softmax
  parameters).
- Statistics (means, variances, fits of draws, each with a false-fail bound) are in
  ``statistical.py``.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .child.codec import TensorValue, describe
from .processes import StudentCodeError

_INT_TYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)


class CheckFailed(AssertionError):
    """A wrong answer; ``str(error)`` is the feedback shown to the student.

    staff_notes: what the staff's diagnostics row should record about how the feedback was made
    (the traceback of a hint that raised), never shown to the student."""

    def __init__(self, message: str = "", *, staff_notes: list[str] | tuple = ()):
        super().__init__(message)
        self.staff_notes = list(staff_notes)


@dataclass(frozen=True)
class BestEffortHint:
    """A hint worked out from the student's value only when the answer is wrong, best-effort.

    Known-mistake code compares the student's value with what each mistake would give; a value of
    a form nobody expected (an array or a str where an int is wanted) can make such code raise
    ("the truth value of an array is ambiguous"), and an exception in a check is an internal
    grader error. The guard lives here, in the helpers that build feedback (``_fail``, hence
    ``expect_exact_int``, ``as_real``, ``as_array``, ``expect_close``, …), not in each problem's
    hint code: they resolve the hint only when they fail, and when it raises, the failure stays
    the student's wrong answer with ``generic`` as its hint, while the hint's traceback rides on
    ``CheckFailed.staff_notes`` to the grading plugin, which writes it into the staff's diagnostics
    row. Hint code should still validate before it compares (``plain_count``); this is the net.

    compute: () -> the hint's text (the one naming a known mistake, or the generic one).
    generic: the check's general hint, shown when compute raises.
    """

    compute: Callable[[], str]
    generic: str


def resolve_hint(hint: str | BestEffortHint) -> tuple[str, list[str]]:
    """A hint's text, and the staff notes its computation left (a traceback, when it raised)."""
    if not isinstance(hint, BestEffortHint):
        return hint, []
    try:
        text = hint.compute()
        if not isinstance(text, str):
            raise TypeError(f"a hint must be a str, not {type(text).__name__}")
        return text, []
    except Exception as error:  # best-effort: never let a hint turn a wrong answer into a grader error
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return hint.generic, [f"a hint raised; the student was shown the generic hint instead:\n{detail}"]


def plain_count(value) -> int | float | None:
    """A returned number as a plain Python int or float for known-mistake code to compare with
    ``==`` and arithmetic: ints and numpy integers as int, finite floats and numpy floats as float;
    anything else (bool, str, list, array, tensor, NaN) None. Verdicts use ``expect_exact_int``."""
    t = type(value)
    if t is int or isinstance(value, np.integer):
        return int(value)
    if (t is float or isinstance(value, np.floating)) and math.isfinite(float(value)):
        return float(value)
    return None


def short(value, limit: int = 160) -> str:
    """A value as feedback shows it, cut to ``limit`` characters."""
    text = repr(value.array if isinstance(value, TensorValue) else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def feedback(*, call: str, expected: str, got: str, hint: str = "", instance: str = "") -> str:
    """The standard wording of a wrong answer (a ``BestEffortHint`` is resolved by ``_fail``,
    which raises with its staff notes; here the hint must be text)."""
    assert isinstance(hint, str), f"feedback() takes a str hint, not {type(hint).__name__}: use _fail"
    lines = [f"{call} returned {got}", f"expected {expected}"]
    if instance:
        lines.insert(0, f"On {instance}:")
    if hint:
        lines.append(f"Hint: {hint}")
    return "\n".join(lines)


def expect_exact_int(value, expected: int, *, call: str, hint: str | BestEffortHint = "",
                     instance: str = "") -> None:
    """Pass when ``value`` is an exact int (Python int or numpy integer, never bool or float)
    equal to ``expected``; numbers beyond 2**63 must be Python ints to be right. Any other value
    (a float, a str, a list, an array) fails as a wrong answer saying what a count must be."""
    t = type(value)
    if t is not int and t not in _INT_TYPES:
        _fail(call=call, got=f"{short(value)}, {describe(value)}{_not_a_count(value)}",
              expected=f"the int {expected}", hint=hint, instance=instance)
    if int(value) != expected:
        _fail(call=call, got=f"{int(value)}", expected=f"{expected}", hint=hint, instance=instance)


def _not_a_count(value) -> str:
    """What is wrong with a count of this type, in parentheses (or "")."""
    t = type(value)
    if t is float or isinstance(value, np.floating):
        return " (a count must be an exact int, not a float: use integer arithmetic such as math.prod)"
    if t is bool or t is np.bool_:
        return " (a count must be an int, not a bool)"
    if t is str:
        return " (a count must be an int, not a str: return the number itself, not its text)"
    if t in (list, tuple) or type(value.array if isinstance(value, TensorValue) else value) is np.ndarray:
        return " (a count is one exact int, not a sequence or an array: return a single int)"
    return ""


def check_each(items, judge, *, count_errors: bool = False, tell_first: bool = False) -> int:
    """Judge every item and report the first failures: ``judge(item)`` raises CheckFailed for a
    wrong answer (or StudentCodeError when the student's call failed). When any answer is wrong,
    raises CheckFailed "N of M answers wrong. The first:" and the first one's feedback. A failed
    call is raised at once, unless ``count_errors`` and an earlier answer was already wrong (that
    one says more; the failed call is counted with its own feedback). With ``tell_first``, the judge
    is called as ``judge(item, first=...)``, first True while no earlier item failed: only the
    first failure's feedback is shown, so costly work to name a mistake is for it alone. Returns M."""
    failures, notes, total = [], [], 0
    for item in items:
        total += 1
        try:
            judge(item, first=not failures) if tell_first else judge(item)
        except CheckFailed as error:
            failures.append(str(error))
            notes += error.staff_notes
        except StudentCodeError as error:
            if not (count_errors and failures):
                raise
            failures.append(error.feedback())
    if failures:
        raise CheckFailed(f"{len(failures)} of {total} answers wrong. The first:\n{failures[0]}", staff_notes=notes)
    return total


def map_calls(student, module: str, function: str, calls: list, *, shown: list[str], expected: str,
              hint: str = "") -> list:
    """``student.map(module, function, calls)``, with an unreadable return value named.

    When one call returns a value that cannot cross to the grader as plain data (a sympy number,
    a Fraction, an object of the student's own class), the child refuses the whole batch with a
    message naming no call. This then repeats the calls one at a time and fails on the first such
    one, naming it (``shown[i]`` describes call i), what came back, ``expected`` and ``hint``.
    Other errors propagate unchanged."""
    try:
        return student.map(module, function, calls)
    except StudentCodeError as error:
        if error.kind != "bad_return":
            raise
        batch_error = error
    for args, call in zip(calls, shown):
        try:
            student.call(module, function, *args)
        except StudentCodeError as error:
            if error.kind != "bad_return":
                raise
            what = error.message.removeprefix("the value returned cannot be graded: ").removesuffix(" cannot be graded")
            raise CheckFailed(feedback(call=call, got=f"{what}, a value the grader cannot read",
                                       expected=expected, hint=hint)) from None
    batch_error.message = f"{function}(): {batch_error.message}"
    raise batch_error


# -- accepted forms of a returned value ----------------------------------------------------------
REAL_FORMS = "a Python float, a numpy scalar or a 0-d tensor"
BOOL_FORMS = "a bool, a numpy bool or a 0-d bool tensor"
ARRAY_FORMS = "an ndarray or a tensor"
_REAL_KINDS = "fiu"  # numpy dtype kinds of real numbers: float, signed and unsigned int


def _fail(*, call: str, got: str, expected: str, hint: str | BestEffortHint, instance: str):
    """Raise CheckFailed with the standard feedback; a BestEffortHint is resolved here (see it)."""
    text, notes = resolve_hint(hint)
    raise CheckFailed(feedback(call=call, got=got, expected=expected, hint=text, instance=instance), staff_notes=notes)


def _is_bool_tensor(value) -> bool:
    return isinstance(value, TensorValue) and value.dtype == "torch.bool"


def as_real(value, *, call: str, hint: str | BestEffortHint = "", instance: str = "",
            what: str = "a real number") -> float:
    """``value`` as a float64, when it is one of the forms the course accepts for a real number:
    a Python float or int, a numpy integer or floating scalar, a 0-d ndarray of those, or a 0-d
    tensor (TensorValue) of an integer or floating dtype. Never a bool (True is not 1.0 here),
    a complex number or a 1-element array. NaN and infinities are refused: they are never right.
    Raises CheckFailed naming the call, what came back and ``hint``."""
    t = type(value)
    if t is bool or t is np.bool_ or _is_bool_tensor(value) or (t is np.ndarray and value.dtype.kind == "b"):
        _fail(call=call, got=f"{short(value)}, {describe(value)}", hint=hint, instance=instance,
              expected=f"{what} ({REAL_FORMS}); a bool is not a number here")
    number = None
    if t is int or t is float:
        try:
            number = float(value)
        except OverflowError:  # an int beyond 1.8e308
            number = math.inf
    elif isinstance(value, np.generic) and value.dtype.kind in _REAL_KINDS:
        number = float(value)
    elif t is np.ndarray and value.shape == () and value.dtype.kind in _REAL_KINDS:
        number = float(value[()])
    elif isinstance(value, TensorValue) and value.array.shape == () and value.array.dtype.kind in _REAL_KINDS:
        number = float(value.array[()])
    if number is None:
        shaped = getattr(value.array if isinstance(value, TensorValue) else value, "shape", None)
        extra = " (a single number is wanted: use .item() or float(...))" if shaped is not None and shaped != () else ""
        _fail(call=call, got=f"{short(value)}, {describe(value)}{extra}", hint=hint, instance=instance,
              expected=f"{what} ({REAL_FORMS})")
    if not math.isfinite(number):
        _fail(call=call, got=f"{number!r}", expected=f"{what}: NaN or an infinity is never right here",
              hint=hint, instance=instance)
    return number


def as_bool(value, *, call: str, hint: str | BestEffortHint = "", instance: str = "") -> bool:
    """``value`` as a Python bool, when it is a bool, a numpy bool, or a 0-d bool ndarray or
    tensor. An int (0/1), a string ("False") or a float is refused with a message."""
    t = type(value)
    if t is bool:
        return value
    if t is np.bool_:
        return bool(value)
    if t is np.ndarray and value.shape == () and value.dtype.kind == "b":
        return bool(value[()])
    if _is_bool_tensor(value) and value.array.shape == ():
        return bool(value.array[()])
    integer = t is int or (isinstance(value, np.generic) and value.dtype.kind in "iu")
    extra = " (return the bool itself, not an int)" if integer else ""
    _fail(call=call, got=f"{short(value)}, {describe(value)}{extra}", expected=f"a bool ({BOOL_FORMS})",
          hint=hint, instance=instance)


def expect_answer(value, expected: bool, *, call: str, why: str, hint: str = "") -> None:
    """A yes/no question's answer: ``value`` must be a bool (``as_bool``; ``hint`` says what the
    question asks) equal to ``expected``; else CheckFailed, with ``why`` as the hint."""
    if as_bool(value, call=call, hint=hint) is not expected:
        raise CheckFailed(feedback(call=call, got=repr(not expected), expected=repr(expected), hint=why))


def as_array(value, *, shape: tuple, call: str, hint: str | BestEffortHint = "", instance: str = "",
             name: str = "the value", minus_infinity_ok: bool = False) -> np.ndarray:
    """``value`` as a float64 ndarray of exactly ``shape``, when it is an ndarray or a tensor
    (TensorValue) of an integer or floating dtype with finite entries (or -inf, where
    ``minus_infinity_ok``: masked logits, which softmax gives probability 0). Bool and complex
    arrays, lists, other shapes (also (k, 1) for (k,)) and other NaN/infinite entries are refused;
    the message names ``name``, the shape wanted and the first bad entry. For a list or tuple the
    hint is replaced by what to do (the values are not judged until the form is right, so a hint
    about them would mislead)."""
    array = value.array if isinstance(value, TensorValue) else value
    if type(array) in (list, tuple):
        what = "a list" if type(array) is list else "a tuple"
        arg = name if name.isidentifier() else "..."
        _fail(call=call, got=f"{name} = {short(value)}, {describe(value)}", instance=instance,
              expected=f"{name} as {ARRAY_FORMS} of real numbers with shape {tuple(shape)}, not {what}",
              hint=f"{what} is not accepted, whatever its numbers: return np.asarray({arg}, dtype=float) or a "
                   f"tensor (torch.tensor({arg})) of shape {tuple(shape)}; the values are checked once the form is right.")
    if type(array) is not np.ndarray or array.dtype.kind not in _REAL_KINDS:
        _fail(call=call, got=f"{name} = {short(value)}, {describe(value)}", hint=hint, instance=instance,
              expected=f"{name} as {ARRAY_FORMS} of real numbers with shape {tuple(shape)}")
    if array.shape != tuple(shape):
        _fail(call=call, got=f"{name} with shape {array.shape}", hint=hint, instance=instance,
              expected=f"{name} with shape {tuple(shape)}")
    result = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(result) & ~(minus_infinity_ok & (result == -np.inf)))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        count = f"{len(bad)} {'NaN or +inf' if minus_infinity_ok else 'non-finite'} entr{'y' if len(bad) == 1 else 'ies'}"
        allowed = "NaN or +inf is never right here" if minus_infinity_ok else "NaN or an infinity is never right here"
        _fail(call=call, got=f"{name} with {count}, e.g. {name}{list(index)} = {float(result[index])!r}",
              expected=f"{name} with finite entries: {allowed}", hint=hint, instance=instance)
    return result


def _worst_entry(got: np.ndarray, expected: np.ndarray, tolerance: np.ndarray):
    """Index of the entry furthest outside its tolerance, and how many are outside."""
    excess = np.abs(got - expected) / np.maximum(tolerance, np.finfo(np.float64).tiny)  # tolerance 0: exact
    outside = int(np.count_nonzero(excess > 1.0))
    index = np.unravel_index(int(np.argmax(excess)), got.shape) if got.size else ()
    return tuple(int(i) for i in index), outside


def _tolerance_text(*, atol: float, rtol: float, scale: float | None, scale_of: str) -> str:
    """How a tolerance was made, as feedback states it after its value."""
    if scale is None:
        return f"{atol:g} + {rtol:g}·|expected|"
    return f"{atol:g} + {rtol:g}·S, S = {scale_of} = {scale:.3g}" if scale_of else f"{atol:g} + {rtol:g}·{scale:.3g}"


def expect_close(got, expected, *, rtol: float, atol: float, call: str, hint: str | BestEffortHint = "",
                 instance: str = "", name: str = "the value", scale: float | None = None, scale_of: str = ""):
    """Pass when ``got`` equals ``expected`` within ``|got − expected| ≤ atol + rtol·|expected|``
    entrywise, in float64; with ``scale``, within ``atol + rtol·scale`` instead (the caller's
    measure of the terms the result is computed from, which rounding errors grow with; a result
    far smaller than its terms, such as a KL near 0, would otherwise get a tolerance below
    float32's rounding). ``scale_of`` says in words what ``scale`` is, for the feedback.
    A scalar ``expected`` takes any accepted real (see ``as_real``); an array ``expected`` takes
    an ndarray or tensor of the same shape (see ``as_array``). Returns ``got`` as float64. The
    feedback reports the worst entry: index, got, expected, difference and tolerance."""
    expected_array = np.asarray(expected, dtype=np.float64)
    how = _tolerance_text(atol=atol, rtol=rtol, scale=scale, scale_of=scale_of)
    magnitude = np.abs(expected_array) if scale is None else np.full(expected_array.shape, float(scale))
    if expected_array.shape == ():
        number = as_real(got, call=call, hint=hint, instance=instance)
        expected_number = float(expected_array)
        tolerance = atol + rtol * float(magnitude)
        if not abs(number - expected_number) <= tolerance:
            _fail(call=call, got=f"{number!r}", hint=hint, instance=instance,
                  expected=f"{expected_number!r} (difference {number - expected_number:.3g}; "
                           f"tolerance {tolerance:.2g} = {how})")
        return number
    array = as_array(got, shape=expected_array.shape, call=call, hint=hint, instance=instance, name=name)
    tolerance = atol + rtol * magnitude
    index, outside = _worst_entry(array, expected_array, tolerance)
    if outside:
        _fail(call=call, hint=hint, instance=instance,
              got=f"{name} with {outside} of {array.size} entries off; the worst, {name}{list(index)}, "
                  f"is {float(array[index])!r}",
              expected=f"{name}{list(index)} = {float(expected_array[index])!r} (difference "
                       f"{array[index] - expected_array[index]:.3g}; tolerance {tolerance[index]:.2g} = {how})")
    return array


def plain_numbers(value) -> np.ndarray | None:
    """``value`` as a float64 array (a 0-d one for a scalar) when it holds real numbers in an
    accepted form (Python or numpy number, ndarray, tensor; never a bool), else None. For
    recognising known mistakes only: verdicts use ``as_real`` / ``as_array``."""
    array = value.array if isinstance(value, TensorValue) else value
    if type(array) is float:
        return np.asarray(array)
    if type(array) is int:
        return np.asarray(float(array)) if abs(array) < 1e308 else None
    if isinstance(array, np.generic) or type(array) is np.ndarray:
        return np.asarray(array, dtype=np.float64) if np.asarray(array).dtype.kind in _REAL_KINDS else None
    return None


def known_mistake(got, mistakes, *, rtol: float, atol: float, shift: bool = False) -> str | None:
    """The hint of the known mistake that ``got`` matches (several joined by "Or:" when more than
    one does), else None (the check's generic hint then stays).

    mistakes: (hint, value) pairs, value what that mistake returns on this instance (a number or
    an array; None when the mistake gives no finite value here). ``got`` matches when it has
    value's shape and ``|got − value| ≤ atol + rtol·|value|`` entrywise in float64; with
    ``shift``, after removing the median of ``got − value`` (a constant the check accepts)."""
    numbers = plain_numbers(got)
    if numbers is None or not np.all(np.isfinite(numbers)):
        return None
    matched = []
    for hint, value in mistakes:
        if value is None:
            continue
        target = np.asarray(value, dtype=np.float64)
        if target.shape != numbers.shape or not np.all(np.isfinite(target)):
            continue
        offset = float(np.median(numbers - target)) if shift and target.size else 0.0
        if np.all(np.abs(numbers - offset - target) <= atol + rtol * np.abs(target)) and hint not in matched:
            matched.append(hint)
    return " Or: ".join(matched) or None


def is_half_precision(value: float) -> bool:
    """Whether a returned number is exactly a float16 or bfloat16 value, other than a small integer
    (|v| ≤ 16): what ``.item()`` of a half-precision result gives (a float64 or float32 computation
    lands on such a value with probability ~2**-13 or less)."""
    if not math.isfinite(value) or value == 0.0 or (value == round(value) and abs(value) <= 16):
        return False
    as32 = np.float32(value)
    bfloat16 = float(as32) == value and (int(as32.view(np.uint32)) & 0xFFFF) == 0
    return bool(float(np.float16(value)) == value or bfloat16)


def expect_close_up_to_shift(got, expected, *, rtol: float, atol: float, call: str, hint: str | BestEffortHint = "",
                             instance: str = "", name: str = "the value", scale: float | None = None,
                             scale_of: str = "") -> np.ndarray:
    """Pass when ``got − expected`` is the same along axis 0 (every row of a matrix shifted by
    one vector c, every entry of a vector by one scalar d), as for softmax parameters, whose
    posterior does not change under (W + 1cᵀ, b + d1).

    Both arrays are centred along axis 0 (the mean over rows subtracted), which removes any
    common shift, and compared entrywise with ``|got_c − expected_c| ≤ atol + rtol·max|expected_c|``,
    or ``atol + rtol·scale`` with ``scale`` (the caller's measure of the terms the entries are
    computed from; ``scale_of`` says what it is). Either way the tolerance comes from the
    reference, never from the answer, so a huge shift buys no slack. Returns the shift found
    (mean over rows of got − expected). Feedback reports the worst entry of the centred arrays,
    which rows are off, and says that a common shift is allowed."""
    expected_array = np.asarray(expected, dtype=np.float64)
    array = as_array(got, shape=expected_array.shape, call=call, hint=hint, instance=instance, name=name)
    got_centred = array - array.mean(axis=0)
    expected_centred = expected_array - expected_array.mean(axis=0)
    magnitude = float(np.max(np.abs(expected_centred), initial=0.0)) if scale is None else float(scale)
    tolerance = np.full(expected_array.shape, atol + rtol * magnitude)
    index, outside = _worst_entry(got_centred, expected_centred, tolerance)
    if outside:
        row, rows = index[0], expected_array.shape[0]
        excess = np.abs(got_centred - expected_centred) > tolerance
        rows_off = int(np.count_nonzero(excess.reshape(rows, -1).any(axis=1)))
        # Only when the other rows all agree can one row be blamed; otherwise say how many disagree.
        which = (f"so row {row} alone is wrong relative to the others" if rows_off == 1 else
                 f"so the rows disagree with one another: {rows_off} of {rows} rows are off after centring, "
                 f"the worst row {row}")
        how = _tolerance_text(atol=atol, rtol=rtol, scale=scale, scale_of=scale_of) if scale is not None else \
            f"{atol:g} + {rtol:g}·max|centred expected|"
        _fail(call=call, hint=hint, instance=instance,
              got=f"{name} whose rows differ from the right answer by more than one common shift: after subtracting "
                  f"the mean over rows, {name}{list(index)} is {got_centred[index]:.10g}",
              expected=f"{expected_centred[index]:.10g} there (difference {got_centred[index] - expected_centred[index]:.3g}, "
                       f"tolerance {tolerance[index]:.2g} = {how}; {outside} of {array.size} entries off; any shift "
                       f"shared by all {rows} rows is accepted, {which})")
    return (array - expected_array).mean(axis=0)
