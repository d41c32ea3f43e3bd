"""The shared comparison helpers: which forms of a value are accepted, what the feedback says,
and that the statistical tests keep their stated false-fail probabilities."""
import math

import numpy as np
import pytest

from autograder.child.codec import TensorValue
from autograder.compare import (BestEffortHint, CheckFailed, as_array, as_bool, as_real, check_each, expect_close,
                                expect_close_up_to_shift, expect_exact_int, is_half_precision, known_mistake,
                                plain_count)
from autograder.statistical import (binomial_too_few, mean_test, multinomial_fit_test, normal_threshold,
                                    pooled_fit_test, two_sample_mean_test, variance_test)


def tensor(value, dtype="torch.float32"):
    array = np.asarray(value, dtype=bool if dtype == "torch.bool" else np.float32 if "float" in dtype else np.int64)
    return TensorValue(array=array, dtype=dtype, device="cpu", requires_grad=False)


@pytest.mark.parametrize("value, expected", [
    (1.5, 1.5), (2, 2.0), (np.float32(1.5), 1.5), (np.int64(-3), -3.0), (np.uint8(7), 7.0), (np.array(2.5), 2.5),
    (tensor(0.25), 0.25), (tensor(4, "torch.int64"), 4.0),
])
def test_as_real_accepts_the_course_forms(value, expected):
    got = as_real(value, call="f()")
    assert type(got) is float and got == expected


@pytest.mark.parametrize("value, message", [
    (True, "a bool is not a number here"), (np.bool_(False), "a bool is not a number here"),
    (tensor(True, "torch.bool"), "a bool is not a number here"), ("1.0", "a str"), ([1.0], "a list"),
    (np.array([1.0]), "a single number is wanted"), (tensor([1.0]), "a single number is wanted"),
    (1 + 0j, "a complex"), (np.complex128(1), "numpy complex128"), (None, "None"),
    (math.nan, "NaN or an infinity is never right"), (np.float64(-np.inf), "NaN or an infinity"),
    (10**400, "NaN or an infinity"),
])
def test_as_real_refuses_everything_else(value, message):
    with pytest.raises(CheckFailed) as error:
        as_real(value, call="f(1)", hint="think again")
    text = str(error.value)
    assert message in text and text.startswith("f(1) returned") and "Hint: think again" in text


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (np.bool_(False), False), (np.array(True), True), (tensor(False, "torch.bool"), False),
])
def test_as_bool_accepts_bools(value, expected):
    assert as_bool(value, call="g()") is expected


@pytest.mark.parametrize("value, message", [
    (0, "return the bool itself, not an int"), (np.int64(1), "not an int"), ("False", "'False', a str"),
    (0.0, "a float"), (tensor([False], "torch.bool"), "tensor"), (None, "None"),
])
def test_as_bool_refuses_other_values(value, message):
    with pytest.raises(CheckFailed) as error:
        as_bool(value, call="g()")
    assert message in str(error.value) and "expected a bool" in str(error.value)


def test_as_array_checks_type_shape_and_finiteness():
    got = as_array(tensor([[1, 2], [3, 4]]), shape=(2, 2), call="h()")
    assert got.dtype == np.float64 and got.tolist() == [[1, 2], [3, 4]]
    for value, message in [([1.0, 2.0], "as an ndarray or a tensor"), (np.zeros(3, dtype=bool), "as an ndarray"),
                           (np.zeros((3, 1)), "b with shape (3, 1)"), (np.array([1.0, np.nan, 2.0]), "b[1] = nan")]:
        with pytest.raises(CheckFailed) as error:
            as_array(value, shape=(3,), call="h()", name="b")
        assert message in str(error.value), str(error.value)


def test_expect_close_reports_the_worst_entry():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    got = expected + np.array([[0.0, 1e-7], [0.5, 0.0]])
    assert np.array_equal(expect_close(expected.copy(), expected, rtol=1e-6, atol=0, call="f()"), expected)
    with pytest.raises(CheckFailed) as error:
        expect_close(got, expected, rtol=1e-6, atol=1e-9, call="f(x)", instance="the instance", hint="h")
    text = str(error.value)
    assert text.startswith("On the instance:\nf(x) returned the value with 1 of 4 entries off")
    assert "the value[1, 0], is 3.5" in text and "the value[1, 0] = 3.0 (difference 0.5" in text
    assert expect_close(np.float32(0.5), 0.5, rtol=1e-6, atol=1e-9, call="f()") == 0.5
    with pytest.raises(CheckFailed, match=r"difference 0.001; tolerance 1e-06"):
        expect_close(1.001, 1.0, rtol=0, atol=1e-6, call="f()")


def test_expect_close_up_to_shift_accepts_common_shifts_only():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    shift = expect_close_up_to_shift(W + np.array([1.0, -2.0, 30.0]), W, rtol=1e-6, atol=1e-9, call="s()", name="W")
    assert np.allclose(shift, [1.0, -2.0, 30.0])
    expect_close_up_to_shift(b - 1e3, b, rtol=1e-6, atol=1e-9, call="s()", name="b")
    wrong = b.copy()
    wrong[2] += 0.01
    with pytest.raises(CheckFailed) as error:
        expect_close_up_to_shift(wrong + 5.0, b, rtol=1e-6, atol=1e-9, call="s()", name="b")
    assert "any shift shared by all 4 rows is accepted" in str(error.value) and "b[2]" in str(error.value)
    # A huge shift buys no slack: the tolerance follows the reference's centred entries.
    with pytest.raises(CheckFailed):
        expect_close_up_to_shift(wrong + 1e9, b, rtol=1e-6, atol=1e-9, call="s()", name="b")



def test_expect_close_with_a_scale_uses_it_and_says_so():
    # a small result summed from large terms: the tolerance follows the terms, not the result
    assert expect_close(0.0030133, 0.0030132, rtol=1e-5, atol=0, call="f()", scale=3.0) == 0.0030133
    with pytest.raises(CheckFailed, match=r"tolerance 3e-05 = 0 \+ 1e-05·S, S = the terms' size = 3\)"):
        expect_close(0.0031, 0.0030132, rtol=1e-5, atol=0, call="f()", scale=3.0, scale_of="the terms' size")


def test_expect_close_up_to_shift_with_a_scale_and_which_rows_are_off():
    b = np.array([0.1, 0.1001])
    expect_close_up_to_shift(b + np.array([5e-7, -5e-7]), b, rtol=1e-6, atol=0, call="s()", name="b", scale=10.0)
    with pytest.raises(CheckFailed) as error:  # two rows: neither can be blamed alone
        expect_close_up_to_shift(b + np.array([0.0, 1e-3]), b, rtol=1e-6, atol=0, call="s()", name="b", scale=10.0,
                                 scale_of="the terms")
    text = str(error.value)
    assert "2 of 2 entries off" in text and "2 of 2 rows are off" in text and "alone" not in text
    assert "tolerance 1e-05 = 0 + 1e-06·S, S = the terms = 10" in text
    many = np.arange(6.0)
    with pytest.raises(CheckFailed, match="so row 3 alone is wrong relative to the others"):
        expect_close_up_to_shift(many + np.array([0, 0, 0, 1.0, 0, 0]), many, rtol=0, atol=0.5, call="s()", name="b")


@pytest.mark.parametrize("value, kind", [([[1.0, 2.0]], "a list"), ((1.0, 2.0), "a tuple")])
def test_as_array_says_how_to_convert_a_list(value, kind):
    with pytest.raises(CheckFailed) as error:
        as_array(value, shape=(2,), call="h()", name="b", hint="a hint about the formula")
    text = str(error.value)
    assert f"not {kind}" in text and "np.asarray(b, dtype=float) or a tensor" in text and "formula" not in text


def test_normal_threshold_values():
    assert normal_threshold(1e-6) == pytest.approx(4.8916, abs=1e-4)
    assert normal_threshold(1e-7) == pytest.approx(5.3267, abs=1e-4)


def test_bernstein_threshold_solves_its_inequality_and_is_conservative():
    rng = np.random.default_rng(1)
    n, sd, bound, false_fail = 500, 1 / math.sqrt(12), 0.5, 0.3
    test = mean_test(rng.uniform(size=n), 0.5, sd=sd, bound=bound, false_fail=false_fail)
    epsilon = test.threshold
    assert 2 * math.exp(-n * epsilon**2 / (2 * sd**2 + 2 * bound * epsilon / 3)) == pytest.approx(false_fail)
    fails = sum(not mean_test(rng.uniform(size=n), 0.5, sd=sd, bound=bound, false_fail=false_fail).passed
                for _ in range(2000))
    assert fails / 2000 < false_fail  # Bernstein is a bound: the real rate is far lower
    assert not mean_test(rng.uniform(size=n) + 4 * test.detectable, 0.5, sd=sd, bound=bound).passed


def test_normal_tests_fail_a_correct_answer_at_the_stated_rate():
    # At false_fail 0.5 the aimed rate is 0.05 (the margin of 10); 4000 trials pin it to ±0.01.
    rng = np.random.default_rng(2)
    one = np.mean([not mean_test(rng.normal(size=400), 0.0, false_fail=0.5).passed for _ in range(4000)])
    two = np.mean([not two_sample_mean_test(rng.normal(size=300), rng.normal(size=900), false_fail=0.5).passed
                   for _ in range(4000)])
    assert 0.035 < one < 0.065 and 0.035 < two < 0.065


def test_two_sample_test_reports_what_feedback_needs():
    rng = np.random.default_rng(3)
    test = two_sample_mean_test(rng.normal(0.3, 1.0, 20000), rng.normal(0.0, 1.0, 200000))
    assert not test.passed and test.statistic > 20
    assert test.standard_error == pytest.approx(math.sqrt(1 / 20000 + 1 / 200000), rel=0.02)
    assert test.detectable == pytest.approx(test.threshold + 3.09 * test.standard_error, rel=1e-3)
    assert "standard errors" in test.summary() and "probability ≤ 1.0e-06" in test.summary()


# -- the variance test (P5a), the pooled G-test and the binomial count (P6c) -----------------------


def test_variance_test_keeps_its_false_fail_bound_and_catches_one_draw_reused():
    """Bounded draws (uniform on [0, 1]: mean ½, variance 1/12, fourth central moment 1/80), at
    false-fail 1e-2 so that a simulation can see it; and a sample k = 4 times too spread fails."""
    rng = np.random.default_rng(3)
    runs = [variance_test(rng.uniform(size=2000), mean=0.5, variance=1 / 12, fourth_central_moment=1 / 80, bound=0.5,
                          false_fail=1e-2) for _ in range(2000)]
    assert sum(not test.passed for test in runs) / len(runs) <= 1e-2
    assert "Bernstein" in runs[0].band_text() and runs[0].expected == pytest.approx(1 / 12)
    spread = 0.5 + 2.0 * (rng.uniform(size=2000) - 0.5)  # variance 4/12, same mean: "one draw reused"
    assert not variance_test(np.clip(spread, 0, 1), mean=0.5, variance=1 / 12, fourth_central_moment=1 / 80,
                             bound=0.5).passed
    shifted = variance_test(rng.uniform(size=2000) + 0.3, mean=0.5, variance=1 / 12, fourth_central_moment=1 / 80,
                            bound=0.5)
    assert shifted.passed  # a wrong mean is the mean test's business, not this one's


def test_pooled_fit_keeps_its_false_fail_bound():
    """Three groups of draws from known distributions, at false-fail 1e-2: the pooled test fails
    correct draws at most that often, and a group drawn from another distribution fails it."""
    rng = np.random.default_rng(5)
    groups = [np.array([0.5, 0.3, 0.2]), np.full(6, 1 / 6), np.array([0.9, 0.1])]
    sizes = [200, 120, 60]

    def pooled(samplers):
        return pooled_fit_test([multinomial_fit_test(rng.multinomial(n, q), p, min_expected=0, false_fail=1e-2)
                                for n, q, p in samplers], false_fail=1e-2)
    runs = [pooled(zip(sizes, groups, groups)) for _ in range(3000)]
    assert sum(not run.passed for run in runs) / len(runs) <= 1e-2
    wrong = [groups[0], np.full(6, 1 / 6), np.array([0.5, 0.5])]  # the last group drawn at another temperature
    assert not pooled(zip(sizes, wrong, groups)).passed
    assert "pooled G-test" in runs[0].summary()


def test_binomial_count_fails_a_missing_token_only_when_it_should_be_seen():
    assert binomial_too_few(0, 1200, 0.02, false_fail=1e-6)  # 24 draws expected: none is damning
    assert not binomial_too_few(0, 1200, 0.005, false_fail=1e-6)  # 6 expected: none happens to a correct sampler
    assert not binomial_too_few(20, 1200, 0.02, false_fail=1e-6)
    rng = np.random.default_rng(7)
    counts = rng.binomial(300, 0.03, size=200_000)
    verdict = {int(c): binomial_too_few(int(c), 300, 0.03, false_fail=1e-3) for c in np.unique(counts)}
    assert sum(verdict[int(c)] for c in counts) / counts.size <= 1e-3


def test_known_mistake_names_what_matches_within_tolerance():
    mistakes = [("averaged", 2.0), ("doubled", 8.0), ("not finite", math.inf), ("nothing", None)]
    assert known_mistake(2.05, mistakes, rtol=0.0, atol=0.1) == "averaged"
    assert known_mistake(5.0, mistakes, rtol=0.0, atol=0.1) is None
    assert known_mistake(np.array([1.0, 2.0]) + 7.0, [("shifted", np.array([1.0, 2.0]))], rtol=0, atol=1e-9,
                         shift=True) == "shifted"
    assert known_mistake(tensor(8.0), mistakes, rtol=0.0, atol=0.1) == "doubled"
    assert known_mistake(3.0, [("a", 3.0), ("b", 3.0)], rtol=0, atol=0) == "a Or: b"


@pytest.mark.parametrize("value, half", [(-437.25, True), (float(np.float16(-123.456)), True), (-1714.0, True),
                                         (-437.2512345, False),
                                         (-12.0, False), (float(np.float32(-437.2512345)), False), (0.0, False)])
def test_half_precision_values_are_recognised(value, half):
    assert is_half_precision(value) is half


@pytest.mark.parametrize("value, words", [
    (np.array([1, 2]), "not a sequence or an array"), ([1, 2], "not a sequence or an array"),
    ((3,), "not a sequence or an array"), ("3", "not a str"), (3.0, "not a float"), (True, "not a bool"),
    (None, "expected the int 3"), (tensor([3], "torch.int64"), "not a sequence or an array")])
def test_expect_exact_int_fails_any_other_value_as_a_wrong_answer(value, words):
    with pytest.raises(CheckFailed) as caught:
        expect_exact_int(value, 3, call="full_joint([2, 2])", hint="subtract one")
    assert words in str(caught.value) and "full_joint([2, 2]) returned" in str(caught.value)
    assert "Hint: subtract one" in str(caught.value) and caught.value.staff_notes == []


@pytest.mark.parametrize("value, plain", [(3, 3), (np.int64(-4), -4), (2**70, 2**70), (2.5, 2.5), (np.float32(0.5), 0.5),
                                         (True, None), (np.bool_(True), None), ("3", None), ([3], None),
                                         (np.array([1, 2]), None), (np.array(3), None), (math.nan, None),
                                         (math.inf, None), (tensor(3.0), None)])
def test_plain_count_gives_only_plain_numbers(value, plain):
    got = plain_count(value)
    assert got == plain and type(got) is type(plain)


def test_a_hint_that_raises_leaves_the_wrong_answer_with_the_generic_hint():
    """Known-mistake code that chokes on the student's value (an array's ambiguous ``==``) must not
    turn a wrong answer into a grader error: the generic hint is shown, and the traceback is kept
    for the staff's diagnostics (CheckFailed.staff_notes, carried through check_each)."""
    got = np.array([1, 2])

    def naive_hint():
        return "subtract one" if got == 4 else "the generic hint"  # raises: the truth value of an array …
    with pytest.raises(CheckFailed) as caught:
        check_each([got], lambda value: expect_exact_int(value, 3, call="full_joint([2, 2])",
                                                         hint=BestEffortHint(naive_hint, generic="count the outcomes")))
    text = str(caught.value)
    assert text.startswith("1 of 1 answers wrong") and "Hint: count the outcomes" in text and "ambiguous" not in text
    (note,) = caught.value.staff_notes
    assert "a hint raised" in note and "ValueError" in note and "naive_hint" in note
    # not computed at all for a right answer; computed once for a wrong one
    calls = []
    expect_exact_int(3, 3, call="f()", hint=BestEffortHint(lambda: calls.append(1) or "h", generic="g"))
    with pytest.raises(CheckFailed, match="Hint: h$"):
        expect_exact_int(4, 3, call="f()", hint=BestEffortHint(lambda: calls.append(1) or "h", generic="g"))
    assert calls == [1]
    with pytest.raises(CheckFailed, match="Hint: g$"):  # a hint that returns something other than text
        as_real("x", call="f()", hint=BestEffortHint(lambda: None, generic="g"))


def test_check_each_tells_the_judge_whether_an_earlier_answer_failed():
    """tell_first: first is True until an item fails, so work that names a mistake is done for the
    first failure only, the one whose feedback is shown."""
    seen = []

    def judge(value, first):
        seen.append((value, first))
        if value < 0:
            raise CheckFailed(f"{value} is negative")
    with pytest.raises(CheckFailed, match=r"2 of 4 answers wrong. The first:\n-1 is negative"):
        check_each([1, -1, 2, -2], judge, tell_first=True)
    assert seen == [(1, True), (-1, True), (2, False), (-2, False)]
    assert check_each([1, 2], lambda value: None) == 2  # without tell_first, judge(item) as before
