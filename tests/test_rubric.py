"""The rubric file: the real one loads and matches the checks; bad ones are refused with the
file and key named."""
import pytest

from autograder.rubric import RubricError, load_rubric
from autograder.registry import builtin_problems


def write(tmp_path, text):
    path = tmp_path / "rubric.yaml"
    path.write_text(text)
    return path


def test_real_rubric_loads_with_the_course_points():
    tests = load_rubric()
    assert tests and len({t.test_id for t in tests}) == len(tests)
    by_part = {}
    for t in tests:
        by_part[t.part] = by_part.get(t.part, 0) + t.weight
    course = {"p1": 3, "p2": 4, "p3a": 1.5, "p3b": 1.5, "p3c": 2, "p4": 5, "p5a": 1.5, "p5b": 1.5, "p6a": 1,
              "p6b": 1, "p6c": 5, "p6d": 5, "p6e": 3, "p6f": 5, "p6g": 2, "p6h": 4}
    for part, points in by_part.items():
        assert points == pytest.approx(course[part]), part


def test_every_rubric_test_has_exactly_one_check():
    ids = {t.test_id for t in load_rubric()}
    marked = []
    for path in (f for p in builtin_problems() for f in p.check_files):
        text = path.read_text()
        marked += [line.split('"')[1] for line in text.splitlines() if line.startswith("@pytest.mark.graded(")]
    assert sorted(marked) == sorted(set(marked)), "a rubric id is scored twice"
    assert set(marked) == ids


@pytest.mark.parametrize("text, message", [
    ("tests:\n  p3a_x: {part: p3a, name: x, weight: one}\n", "tests.p3a_x.weight: 'one' is not of type 'number'"),
    ("tests:\n  p3a_x: {part: p3a, name: x, weight: 1, visibility: secret}\n", "tests.p3a_x.visibility"),
    ("tests:\n  p3a_x: {part: p3a, name: x, weight: 1, points: 2}\n", "'points' was unexpected"),
    ("tests:\n  p3a_x: {part: p3a, weight: 1}\n", "tests.p3a_x: 'name' is a required property"),
    ("tests:\n  p3a_x: {part: p3a, name: x, weight: -1}\n", "tests.p3a_x.weight: -1 is less than the minimum"),
    ("tests:\n  p3a_x: {part: p3a, name: x, weight: 1, timeout: 0}\n", "tests.p3a_x.timeout"),
    ("tests:\n  p3a_x: {part: p9, name: x, weight: 1}\n", "tests.p3a_x.part"),
    ("tests:\n  p3a_x: {part: p3b, name: x, weight: 1}\n", "does not match the id's prefix"),
    ("tests:\n  P3A: {part: p3a, name: x, weight: 1}\n", "'P3A' does not match"),
    ("defaults: {timeout: 10}\n", "'tests' is a required property"),
    ("tests: [\n", "not valid YAML"),
])
def test_bad_rubric_is_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(RubricError) as error:
        load_rubric(write(tmp_path, text))
    assert message in str(error.value)
    assert "rubric.yaml" in str(error.value)


def test_missing_rubric_file_is_named(tmp_path):
    with pytest.raises(RubricError, match="cannot read"):
        load_rubric(tmp_path / "nope.yaml")


def test_defaults_apply_and_numbers_follow_the_parts(tmp_path):
    tests = load_rubric(write(tmp_path, "defaults: {timeout: 7, visibility: hidden}\ntests:\n"
                              "  p3a_one: {part: p3a, name: a, weight: 1}\n"
                              "  p3a_two: {part: p3a, name: b, weight: 2, visibility: after_due_date}\n"))
    assert [(t.timeout, t.visibility, t.number, t.title) for t in tests] == [
        (7, "hidden", "3a.1", "[p3a] a"), (7, "after_due_date", "3a.2", "[p3a] b")]
