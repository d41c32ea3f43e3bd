"""P6 checks answered with numbers and booleans (parts p6a, p6b, p6g).

Expected values come from the reference solution (exact Python ints). p6a and p6b check many
inputs, public and drawn from the run's seed, and p6b every flag combination (tied or untied
embeddings, with or without an output bias). Vocabulary sizes stay below 2**24, where the
natural ``math.ceil(math.log2(V))`` is exact, so only wrong formulas and non-int types fail.
"""
import itertools

import pytest

from autograder.compare import BestEffortHint, check_each, expect_answer, expect_exact_int, map_calls, plain_count
from autograder.sandbox import StudentCodeError
from reference.submission import p6_gpt2_counts as reference

MODULE = "p6_gpt2_counts"
PUBLIC_VOCABS = [50257, 2, 3, 4, 5, 255, 256, 257, 1000, 1024, 1025, 60000, 65536, 65537]
FLAGS = list(itertools.product((False, True), repeat=2))  # (tied_embeddings, output_bias)
PUBLIC_GROWTH = [(50257, 60000, 768), (257, 300, 64), (50257, 50258, 1600), (1000, 32000, 512)]


def random_vocabs(rng, count: int = 24) -> list[int]:
    """Uniform sizes up to 10**7, and powers of two with their neighbours (up to 2**23)."""
    uniform = rng.integers(2, 10**7, size=count).tolist()
    powers = [2**int(k) + int(d) for k, d in zip(rng.integers(2, 24, size=count // 2), rng.integers(-1, 2, size=count // 2))]
    return [v for v in uniform + powers if v >= 2]


def random_growth(rng, count: int = 10) -> list[tuple[int, int, int]]:
    old = rng.integers(100, 10**6, size=count)
    new = old + rng.integers(1, 10**5, size=count)
    width = rng.choice([64, 128, 256, 512, 768, 1024, 1280, 1600, 4096], size=count)
    return [(int(o), int(n), int(d)) for o, n, d in zip(old, new, width)]


BITS_HINT = "a fixed-length binary code for V distinct tokens needs ceil(log2 V) bits."
GROWTH_HINT = "the embedding gains (V' - V) d; an untied output layer another (V' - V) d; an output bias V' - V."


def bits_hint(vocab: int, got) -> str:
    """The known mistake ``got`` (any returned value) matches, else the generic hint."""
    number = plain_count(got)  # only plain ints and floats are compared: an array's == is not a bool
    if number is None:
        return BITS_HINT
    if number == vocab.bit_length():
        return "that is floor(log2 V) + 1, one bit too many when V is a power of two: use ceil(log2 V)."
    if type(number) is int and number == vocab.bit_length() - 1 and vocab & (vocab - 1):
        return "that rounds log2 V down; a code for V tokens needs ceil(log2 V) bits."
    return BITS_HINT


def growth_hint(old, new, d, tied, bias, got) -> str:
    """The known mistake ``got`` (any returned value) matches, else the generic hint."""
    number = plain_count(got)  # only plain ints and floats are compared: an array's == is not a bool
    if number is None:
        return GROWTH_HINT
    extra = new - old
    if number == reference.added_parameters(old, new, d, tied_embeddings=not tied, output_bias=bias):
        return ("tied embeddings share one matrix between input and output (count it once); untied ones "
                "add an output layer of (V' - V) x d too.")
    if number == reference.added_parameters(old, new, d, tied_embeddings=tied, output_bias=not bias):
        return "an output bias adds one parameter per new token, and only when there is one."
    if bias and number == reference.added_parameters(old, new, d, tied_embeddings=tied, output_bias=False) + extra * d:
        return "the output bias has one entry per token, not d."
    return GROWTH_HINT


def check_bits(student, vocabs, outcome) -> None:
    answers = map_calls(student, MODULE, "bits_per_token", [(v,) for v in vocabs],
                        shown=[f"bits_per_token({v})" for v in vocabs], expected="an exact int (a Python int or a numpy "
                        "integer)", hint="convert the count with int(...): sympy's and other libraries' numbers are not ints.")
    def judge(item):
        vocab, got = item
        if isinstance(got, StudentCodeError):
            got.message = f"On bits_per_token({vocab}): {got.message}"
            raise got
        expect_exact_int(got, reference.bits_per_token(vocab), call=f"bits_per_token({vocab})",
                         hint=BestEffortHint(lambda: bits_hint(vocab, got), generic=BITS_HINT))
    check_each(zip(vocabs, answers), judge)
    outcome.note(f"All {len(vocabs)} answers exact.")


def check_growth(student, growth, outcome) -> None:
    def judge(item):
        (old, new, d), (tied, bias) = item
        call = f"added_parameters({old}, {new}, {d}, tied_embeddings={tied}, output_bias={bias})"
        try:
            got = student.call(MODULE, "added_parameters", old, new, d, tied_embeddings=tied, output_bias=bias)
        except StudentCodeError as error:
            error.message = f"On {call}: {error.message}"
            raise
        expected = reference.added_parameters(old, new, d, tied_embeddings=tied, output_bias=bias)
        expect_exact_int(got, expected, call=call,
                         hint=BestEffortHint(lambda: growth_hint(old, new, d, tied, bias, got), generic=GROWTH_HINT))
    total = check_each(itertools.product(growth, FLAGS), judge)
    outcome.note(f"All {total} answers exact (every combination of tied_embeddings and output_bias).")


@pytest.mark.graded("p6a_public")
def test_bits_per_token_public(student, outcome):
    check_bits(student, PUBLIC_VOCABS, outcome)


@pytest.mark.graded("p6a_random")
def test_bits_per_token_random(student, rng, outcome):
    check_bits(student, random_vocabs(rng), outcome)


@pytest.mark.graded("p6b_public")
def test_added_parameters_public(student, outcome):
    check_growth(student, PUBLIC_GROWTH, outcome)


@pytest.mark.graded("p6b_random")
def test_added_parameters_random(student, rng, outcome):
    check_growth(student, random_growth(rng), outcome)


@pytest.mark.graded("p6g_answer")
def test_per_token_temperature_answer(student, outcome):
    call = "per_token_temperature_matches_joint()"
    expect_answer(student.call(MODULE, "per_token_temperature_matches_joint"), False, call=call,
                  why="each step's normaliser sum_x p(x | prefix)^(1/T) depends on the prefix, so the product of "
                      "per-step tempered distributions is not p(x)^(1/T) / Z.")
    outcome.note("Right: per-step normalisers depend on the prefix.")
