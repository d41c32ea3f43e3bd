"""Comparison helpers shared by every problem's checks, and the feedback they produce.

A check never compares values itself: it calls one of these, which raise ``CheckFailed`` with
feedback that names the call, the input, what was expected, what came back and a hint.
Values arrive from the child already decoded (``codec``): plain Python, numpy, or TensorValue.

- Accepted forms: ``as_real`` (float, int, numpy scalar, 0-d array or tensor; never bool; NaN
  and infinities refused), ``as_bool`` (bool, numpy bool, 0-d bool array or tensor),
  ``as_array`` (ndarray or tensor of the exact shape, finite), ``expect_exact_int`` (counts).
- Numbers: ``expect_close`` (entrywise ``|got − expected| ≤ atol + rtol·|expected|`` in
  float64, the caller states rtol and atol) and ``expect_close_up_to_shift`` (the same after
  removing a shift common to all rows, for softmax parameters).
- Statistics: ``mean_test`` and ``two_sample_mean_test`` give a ``MeanTest`` whose false-fail
  probability is at most ``FALSE_FAIL`` (1e-6) and which reports the smallest difference it
  detects; ``expect_mean`` turns a failed one into feedback.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .child.codec import TensorValue, describe
from .processes import StudentCodeError

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


def check_each(items, judge, *, count_errors: bool = False) -> int:
    """Judge every item and report the first failures: ``judge(item)`` raises CheckFailed for a
    wrong answer (or StudentCodeError when the student's call failed). When any answer is wrong,
    raises CheckFailed "N of M answers wrong. The first:" and the first one's feedback. A failed
    call is raised at once, unless ``count_errors`` and an earlier answer was already wrong (that
    one says more; the failed call is counted with its own feedback). Returns M."""
    failures, total = [], 0
    for item in items:
        total += 1
        try:
            judge(item)
        except CheckFailed as error:
            failures.append(str(error))
        except StudentCodeError as error:
            if not (count_errors and failures):
                raise
            failures.append(error.feedback())
    if failures:
        raise CheckFailed(f"{len(failures)} of {total} answers wrong. The first:\n{failures[0]}")
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


def _fail(*, call: str, got: str, expected: str, hint: str, instance: str):
    raise CheckFailed(feedback(call=call, got=got, expected=expected, hint=hint, instance=instance))


def _is_bool_tensor(value) -> bool:
    return isinstance(value, TensorValue) and value.dtype == "torch.bool"


def as_real(value, *, call: str, hint: str = "", instance: str = "", what: str = "a real number") -> float:
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


def as_bool(value, *, call: str, hint: str = "", instance: str = "") -> bool:
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


def as_array(value, *, shape: tuple, call: str, hint: str = "", instance: str = "", name: str = "the value") -> np.ndarray:
    """``value`` as a float64 ndarray of exactly ``shape``, when it is an ndarray or a tensor
    (TensorValue) of an integer or floating dtype with finite entries. Bool and complex arrays,
    lists, other shapes (also (k, 1) for (k,)) and NaN/infinite entries are refused; the message
    names ``name``, the shape wanted and the first bad entry."""
    array = value.array if isinstance(value, TensorValue) else value
    if type(array) is not np.ndarray or array.dtype.kind not in _REAL_KINDS:
        _fail(call=call, got=f"{name} = {short(value)}, {describe(value)}", hint=hint, instance=instance,
              expected=f"{name} as {ARRAY_FORMS} of real numbers with shape {tuple(shape)}")
    if array.shape != tuple(shape):
        _fail(call=call, got=f"{name} with shape {array.shape}", hint=hint, instance=instance,
              expected=f"{name} with shape {tuple(shape)}")
    result = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(result))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        count = f"{len(bad)} non-finite entr{'y' if len(bad) == 1 else 'ies'}"
        _fail(call=call, got=f"{name} with {count}, e.g. {name}{list(index)} = {float(result[index])!r}",
              expected=f"{name} with finite entries: NaN or an infinity is never right here", hint=hint, instance=instance)
    return result


def _worst_entry(got: np.ndarray, expected: np.ndarray, tolerance: np.ndarray):
    """Index of the entry furthest outside its tolerance, and how many are outside."""
    excess = np.abs(got - expected) / np.maximum(tolerance, np.finfo(np.float64).tiny)  # tolerance 0: exact
    outside = int(np.count_nonzero(excess > 1.0))
    index = np.unravel_index(int(np.argmax(excess)), got.shape) if got.size else ()
    return tuple(int(i) for i in index), outside


def expect_close(got, expected, *, rtol: float, atol: float, call: str, hint: str = "", instance: str = "",
                 name: str = "the value"):
    """Pass when ``got`` equals ``expected`` within ``|got − expected| ≤ atol + rtol·|expected|``
    entrywise, in float64. A scalar ``expected`` takes any accepted real (see ``as_real``); an
    array ``expected`` takes an ndarray or tensor of the same shape (see ``as_array``). Returns
    ``got`` as float64. The feedback reports the worst entry: index, got, expected, difference
    and tolerance."""
    expected_array = np.asarray(expected, dtype=np.float64)
    if expected_array.shape == ():
        number = as_real(got, call=call, hint=hint, instance=instance)
        expected_number = float(expected_array)
        tolerance = atol + rtol * abs(expected_number)
        if not abs(number - expected_number) <= tolerance:
            _fail(call=call, got=f"{number!r}", hint=hint, instance=instance,
                  expected=f"{expected_number!r} (difference {number - expected_number:.3g}; "
                           f"tolerance {tolerance:.2g} = {atol:g} + {rtol:g}·|expected|)")
        return number
    array = as_array(got, shape=expected_array.shape, call=call, hint=hint, instance=instance, name=name)
    tolerance = atol + rtol * np.abs(expected_array)
    index, outside = _worst_entry(array, expected_array, tolerance)
    if outside:
        _fail(call=call, hint=hint, instance=instance,
              got=f"{name} with {outside} of {array.size} entries off; the worst, {name}{list(index)}, "
                  f"is {float(array[index])!r}",
              expected=f"{name}{list(index)} = {float(expected_array[index])!r} (difference "
                       f"{array[index] - expected_array[index]:.3g}; tolerance {tolerance[index]:.2g} = "
                       f"{atol:g} + {rtol:g}·|expected|)")
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


def expect_close_up_to_shift(got, expected, *, rtol: float, atol: float, call: str, hint: str = "",
                             instance: str = "", name: str = "the value") -> np.ndarray:
    """Pass when ``got − expected`` is the same along axis 0 (every row of a matrix shifted by
    one vector c, every entry of a vector by one scalar d), as for softmax parameters, whose
    posterior does not change under (W + 1cᵀ, b + d1).

    Both arrays are centred along axis 0 (the mean over rows subtracted), which removes any
    common shift, and compared entrywise with ``|got_c − expected_c| ≤ atol + rtol·max|expected_c|``
    (the tolerance scales with the reference's centred entries, so a huge shift buys no slack).
    Returns the shift found (mean over rows of got − expected). Feedback reports the worst entry
    of the centred arrays and says that a common shift is allowed."""
    expected_array = np.asarray(expected, dtype=np.float64)
    array = as_array(got, shape=expected_array.shape, call=call, hint=hint, instance=instance, name=name)
    got_centred = array - array.mean(axis=0)
    expected_centred = expected_array - expected_array.mean(axis=0)
    tolerance = np.full(expected_array.shape, atol + rtol * float(np.max(np.abs(expected_centred), initial=0.0)))
    index, outside = _worst_entry(got_centred, expected_centred, tolerance)
    if outside:
        row = index[0]
        _fail(call=call, hint=hint, instance=instance,
              got=f"{name} whose rows differ from the right answer by more than one common shift: after subtracting "
                  f"the mean over rows, {name}{list(index)} is {got_centred[index]:.10g}",
              expected=f"{expected_centred[index]:.10g} there (difference {got_centred[index] - expected_centred[index]:.3g}, "
                       f"tolerance {tolerance[index]:.2g}; {outside} of {array.size} entries off; any shift shared by "
                       f"all {expected_array.shape[0]} rows is accepted, so row {row} alone is wrong relative to the others)")
    return (array - expected_array).mean(axis=0)


# -- statistical tests ---------------------------------------------------------------------------
FALSE_FAIL = 1e-6
"""The largest probability with which any statistical check may fail a correct answer."""
NORMAL_MARGIN = 10.0
"""Tests that rely on the normal approximation of a mean aim at FALSE_FAIL / NORMAL_MARGIN, so
that the approximation's error (skewness terms, for means of 10⁴ or more draws) cannot push the
real false-fail probability above FALSE_FAIL."""
_POWER_Z = NormalDist().inv_cdf(0.999)  # 3.09: a bias this many standard errors past the threshold is caught 99.9 % of the time


def normal_threshold(false_fail: float) -> float:
    """z with P(|N(0, 1)| > z) = false_fail (two-sided): 4.89 for 1e-6, 5.33 for 1e-7."""
    return NormalDist().inv_cdf(1.0 - false_fail / 2.0)


@dataclass(frozen=True)
class MeanTest:
    """The outcome of testing that a sample mean equals what a correct answer gives on average.

    observed: the sample mean (for two samples: the mean of the first).
    expected: the value a correct answer's mean has in expectation (for two samples: the mean of
        the reference sample, an estimate of it).
    standard_error: of observed − expected (both samples' noise for two samples).
    threshold: the test passes when |observed − expected| ≤ threshold.
    false_fail: a bound on the probability that a correct answer fails.
    method: how the threshold was set, for feedback.
    samples: how many draws the observed mean averages.
    """

    observed: float
    expected: float
    standard_error: float
    threshold: float
    false_fail: float
    method: str
    samples: int

    @property
    def difference(self) -> float:
        return self.observed - self.expected

    @property
    def statistic(self) -> float:
        """The difference in standard errors."""
        if self.standard_error > 0:
            return self.difference / self.standard_error
        return math.copysign(math.inf, self.difference) if self.difference else 0.0

    @property
    def passed(self) -> bool:
        return abs(self.difference) <= self.threshold

    @property
    def detectable(self) -> float:
        """The smallest true difference this test catches with probability ≥ 0.999:
        threshold + 3.09 standard errors."""
        return self.threshold + _POWER_Z * self.standard_error

    def difference_text(self) -> str:
        """"difference +0.012 (+3.10 standard errors of 0.0039)"."""
        return f"difference {self.difference:+.3g} ({self.statistic:+.2f} standard errors of {self.standard_error:.2g})"

    def band_text(self) -> str:
        """"± 0.018 (method: a correct answer fails with probability ≤ …; … is caught 99.9 % of the time)"."""
        return (f"± {self.threshold:.2g} ({self.method}: a correct answer fails with probability ≤ {self.false_fail:.1e}; "
                f"a true difference of {self.detectable:.2g} or more is caught 99.9 % of the time)")

    def summary(self) -> str:
        return f"{self.difference_text()}; pass band {self.band_text()}"


def _finite_sample(samples, label: str) -> np.ndarray:
    array = np.asarray(samples, dtype=np.float64).reshape(-1)
    if array.size < 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"{label} must hold at least two finite numbers")  # checks test finiteness first
    return array


def mean_test(samples, expected: float, *, sd: float | None = None, bound: float | None = None,
              false_fail: float = FALSE_FAIL) -> MeanTest:
    """Test that iid ``samples`` have mean ``expected``.

    - ``sd`` and ``bound`` given (a correct answer's draws have standard deviation ≤ sd and lie
      within ``bound`` of their mean): Bernstein's inequality, P(|mean − μ| ≥ ε) ≤
      2 exp(−N ε² / (2 sd² + 2 bound ε / 3)), solved for ε at ``false_fail``. Exact for any N, no
      normal approximation.
    - ``sd`` given alone: normal approximation with that sd, at false_fail / NORMAL_MARGIN.
    - neither: normal approximation with the sample's sd (ddof 1), at false_fail / NORMAL_MARGIN.
    ``samples`` must be finite (check that first, with feedback)."""
    array = _finite_sample(samples, "samples")
    n = array.size
    if sd is not None and bound is not None:
        log_term = math.log(2.0 / false_fail)
        linear = 2.0 * log_term * bound / 3.0
        threshold = (linear + math.sqrt(linear**2 + 8.0 * n * log_term * sd**2)) / (2.0 * n)
        method, standard_error = "Bernstein's inequality", sd / math.sqrt(n)
    else:
        standard_error = (sd if sd is not None else float(array.std(ddof=1))) / math.sqrt(n)
        threshold = normal_threshold(false_fail / NORMAL_MARGIN) * standard_error
        method = f"normal approximation, {normal_threshold(false_fail / NORMAL_MARGIN):.2f} standard errors"
    return MeanTest(float(array.mean()), float(expected), standard_error, threshold, false_fail, method, n)


def variance_test(samples, *, mean: float, variance: float, fourth_central_moment: float, bound: float,
                  false_fail: float = FALSE_FAIL) -> MeanTest:
    """Test that iid ``samples`` have variance ``variance``, given what a correct answer's draws
    satisfy: mean ``mean``, E[(X − mean)⁴] = ``fourth_central_moment``, |X − mean| ≤ ``bound``.

    observed is the sample variance S² (ddof 1, centred at the sample mean, so a wrong mean alone
    does not fail it). For correct draws S² = n/(n−1)·(V̄ − (X̄ − mean)²) with V̄ the mean of
    (X − mean)²: Bernstein's inequality bounds |V̄ − variance| (sd of (X − mean)² from the fourth
    moment, range bound²) at false_fail/2 and (X̄ − mean)² (sd from the variance, range bound) at
    false_fail/2, so |S² − variance| ≤ n/(n−1)·(ε_V + ε_X²) + variance/(n−1) fails a correct answer
    with probability ≤ false_fail. Exact for any n, no normal approximation."""
    array = _finite_sample(samples, "samples")
    n = array.size
    spread = math.sqrt(max(fourth_central_moment - variance**2, 0.0))
    squares = mean_test((array - mean) ** 2, variance, sd=spread, bound=max(bound**2 - variance, variance),
                        false_fail=false_fail / 2)
    location = mean_test(array, mean, sd=math.sqrt(variance), bound=bound, false_fail=false_fail / 2)
    threshold = n / (n - 1) * (squares.threshold + location.threshold**2) + variance / (n - 1)
    return MeanTest(float(array.var(ddof=1)), float(variance), spread / math.sqrt(n), threshold, false_fail,
                    "Bernstein's inequality for the squared deviations and for the mean", n)


def two_sample_mean_test(samples, reference_samples, *, false_fail: float = FALSE_FAIL) -> MeanTest:
    """Test that two independent iid samples have the same mean (Welch's statistic, normal
    approximation at false_fail / NORMAL_MARGIN): observed is the first sample's mean, expected
    the reference sample's, and the standard error combines both sample variances."""
    first = _finite_sample(samples, "samples")
    second = _finite_sample(reference_samples, "reference_samples")
    standard_error = math.sqrt(first.var(ddof=1) / first.size + second.var(ddof=1) / second.size)
    z = normal_threshold(false_fail / NORMAL_MARGIN)
    return MeanTest(float(first.mean()), float(second.mean()), standard_error, z * standard_error, false_fail,
                    f"two-sample normal approximation, {z:.2f} standard errors", int(first.size))


def expect_mean(test: MeanTest, *, call: str, quantity: str, hint: str = "", instance: str = "") -> None:
    """Raise CheckFailed with the test's numbers when it did not pass. ``quantity`` names what
    was averaged ("the mean of estimate_marginal(...) over 20000 runs")."""
    if not test.passed:
        _fail(call=call, hint=hint, instance=instance,
              got=f"values whose {quantity} is {test.observed:.6g}: {test.difference_text()}",
              expected=f"{test.expected:.6g} {test.band_text()}")


# -- goodness of fit of draws from a known categorical distribution ------------------------------
def kl_threshold(draws: int, cells: int, false_fail: float = FALSE_FAIL) -> float:
    """The divergence ε with P(D(p̂ ‖ p) ≥ ε) ≤ ``false_fail`` for the empirical distribution p̂
    of ``draws`` iid draws from any distribution p over ``cells`` categories.

    Agrawal's finite-sample bound (R. Agrawal, "Finite-sample concentration of the multinomial in
    relative entropy", IEEE Trans. Inf. Theory 2020: the moment generating function of D(p̂ ‖ p)
    is at most that of a Gamma(k − 1, rate n)) gives, for ε > (k − 1)/n,
    P(D ≥ ε) ≤ e^{−nε} (e·n·ε / (k − 1))^{k − 1}; this solves it for ε. It holds for every n and
    p: no asymptotic χ² approximation and no minimum expected count per cell."""
    n, dof, log_alpha = int(draws), int(cells) - 1, math.log(1.0 / false_fail)
    if n < 1:
        raise ValueError("draws must be at least 1")
    if dof <= 0:
        return log_alpha / n

    def excess(x: float) -> float:  # log of the bound at nε = x, minus log(false_fail); increasing for x > dof
        return -x + dof * (1.0 + math.log(x / dof)) + log_alpha

    low, high = float(dof), dof + log_alpha + 1.0
    while excess(high) > 0:
        high *= 2.0
    for _ in range(200):  # bisection to full double precision
        middle = 0.5 * (low + high)
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return high / n


@dataclass(frozen=True)
class FitTest:
    """The outcome of testing that draws come from a known categorical distribution.

    labels: a name per cell (after pooling), e.g. "token 1012"; the pooled cell is "other".
    observed: draws per cell.
    expected: the probability of each cell under the distribution tested against.
    divergence: D(p̂ ‖ p) in nats, the empirical distribution's relative entropy from expected
        (infinite when a cell of probability 0 was drawn); G = 2·draws·divergence.
    threshold: the test fails when divergence ≥ threshold (see ``kl_threshold``).
    false_fail: the bound on the probability that draws from the expected distribution fail.
    """

    labels: tuple
    observed: np.ndarray
    expected: np.ndarray
    divergence: float
    threshold: float
    false_fail: float

    @property
    def draws(self) -> int:
        return int(self.observed.sum())

    @property
    def passed(self) -> bool:
        return self.divergence < self.threshold

    def summary(self) -> str:
        return (f"G = 2·n·D = {2 * self.draws * self.divergence:.1f} over {len(self.labels)} cells, pass band "
                f"G < {2 * self.draws * self.threshold:.1f} (a G-test with Agrawal's finite-sample bound, exact for "
                f"any number of draws: draws from the expected distribution fail with probability ≤ {self.false_fail:.0e})")

    def table(self, rows: int = 8) -> str:
        """The cells that differ most, as 'label: observed (share) vs expected share' lines."""
        n = max(self.draws, 1)
        share = self.observed / n
        order = np.argsort(-np.abs(share - self.expected), kind="stable")[:rows]
        return "\n".join(f"  {self.labels[i]}: drawn {int(self.observed[i])} times ({share[i]:.1%}), "
                         f"expected {self.expected[i]:.1%}" for i in order)


def multinomial_fit_test(counts, probabilities, *, labels=None, pool=None, min_expected: float = 10.0,
                         false_fail: float = FALSE_FAIL) -> FitTest:
    """Test that ``counts`` (draws per category) come from ``probabilities`` (summing to 1).

    Categories whose expected count is below ``min_expected``, and those marked in the boolean
    mask ``pool``, are merged into one cell "other" first (fewer cells lower the threshold; a
    merge of categories of a multinomial is a multinomial, so the bound still holds). A draw of a
    category of probability 0 that is not pooled makes the divergence infinite: such a draw
    never comes from the expected distribution. See ``kl_threshold`` for the false-fail bound."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if counts.shape != probabilities.shape or counts.size == 0 or (counts < 0).any():
        raise ValueError("counts and probabilities must be non-empty, of one shape, counts non-negative")
    if (probabilities < 0).any() or abs(probabilities.sum() - 1.0) > 1e-9:
        raise ValueError("probabilities must be non-negative and sum to 1")
    labels = [str(i) for i in range(counts.size)] if labels is None else [str(label) for label in labels]
    n = int(counts.sum())
    merged = (probabilities * n < min_expected) & (probabilities > 0)
    if pool is not None:
        merged |= np.asarray(pool, dtype=bool).reshape(-1)
    keep = ~merged & ((probabilities > 0) | (counts > 0))  # impossible cells matter only when drawn
    observed = counts[keep]
    expected = probabilities[keep]
    names = [label for label, kept in zip(labels, keep) if kept]
    if merged.any():
        observed = np.append(observed, counts[merged].sum())
        expected = np.append(expected, probabilities[merged].sum())
        names.append("other")
    drawn = observed > 0
    if n == 0:
        divergence = 0.0
    elif (expected[drawn] == 0).any():
        divergence = math.inf
    else:
        share = observed[drawn] / n
        divergence = float(np.sum(share * np.log(share / expected[drawn])))
    cells = int(np.count_nonzero(expected > 0))
    return FitTest(tuple(names), observed, expected, max(divergence, 0.0), kl_threshold(max(n, 1), cells, false_fail),
                   false_fail)


@dataclass(frozen=True)
class PooledFit:
    """Several independent goodness-of-fit tests judged as one (e.g. the second sampled token's
    distribution given each first token): G = 2 Σ_g n_g D_g over the groups g.

    By Agrawal's bound each n_g D_g has a moment generating function at most that of a
    Gamma(cells_g − 1, 1); independent groups add, so Σ n_g D_g is dominated by a Gamma(d, 1) with
    d = Σ_g (cells_g − 1), and P(Σ n_g D_g ≥ x) ≤ e^{−x} (e x / d)^d: the threshold solves that at
    false_fail, for any group sizes, as ``kl_threshold`` does for one group."""

    groups: tuple
    statistic: float  # Σ_g n_g D_g
    threshold: float  # the test fails when statistic ≥ threshold
    false_fail: float

    @property
    def passed(self) -> bool:
        return self.statistic < self.threshold

    def summary(self) -> str:
        cells = sum(len(g.labels) for g in self.groups)
        return (f"G = {2 * self.statistic:.1f} over {len(self.groups)} groups and {cells} cells, pass band G < "
                f"{2 * self.threshold:.1f} (a pooled G-test with Agrawal's finite-sample bound: draws from the expected "
                f"distributions fail with probability ≤ {self.false_fail:.0e})")


def pooled_fit_test(tests, *, false_fail: float = FALSE_FAIL) -> PooledFit:
    """Pool FitTests of independent groups of draws into one test (see PooledFit)."""
    tests = tuple(tests)
    statistic = sum(t.draws * t.divergence for t in tests)
    dof = sum(max(int(np.count_nonzero(t.expected > 0)) - 1, 0) for t in tests)
    return PooledFit(tests, float(statistic), kl_threshold(1, dof + 1, false_fail), false_fail)


def binomial_too_few(count: int, draws: int, probability: float, *, false_fail: float) -> bool:
    """Whether ``count`` successes in ``draws`` trials are too few for success probability
    ``probability``: Chernoff's bound P(X ≤ c) ≤ exp(−n·KL(c/n ‖ p)) for c < n·p is at most
    false_fail (the bound is above the true tail, so the false-fail probability is ≤ false_fail)."""
    if draws <= 0 or probability <= 0.0 or count >= draws * probability:
        return False
    share = count / draws
    kl = (share * math.log(share / probability) if share > 0 else 0.0) + \
        (1 - share) * math.log((1 - share) / (1 - probability))
    return -draws * kl <= math.log(false_fail)


def expect_fit(test: FitTest, *, call: str, quantity: str, hint: str = "", instance: str = "") -> None:
    """Raise CheckFailed with the test's numbers and the cells that differ most when it did not
    pass. ``quantity`` names what was drawn ("the next token over 2000 calls")."""
    if not test.passed:
        _fail(call=call, hint=hint, instance=instance,
              got=f"draws whose distribution of {quantity} differs from the expected one:\n{test.table()}",
              expected=f"draws from the expected distribution: {test.summary()}")
