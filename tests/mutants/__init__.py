"""The table of mutants: every graded check proven by the wrong submissions it catches and the
right-but-different ones it accepts (tests/test_mutants.py grades them all).

A ``Mutant`` is the reference submission with some files replaced (``files``). It declares the
parts whose checks run the changed code (``parts``); within those parts it must lose exactly the
rubric tests in ``lose`` (none: a right-but-different submission, which keeps full marks), and
its feedback must contain ``words`` (per rubric test: the known mistake it names, the call, the
instance, the numbers). The data of each problem's mutants is in ``p1.py`` … ``p6.py`` here.

Grading every mutant alone repeated one grading's start-up a hundred times, so mutants whose
parts are disjoint share a grading (``plan``): one submission holds all their files, graded on
the union of their parts. That is sound because each mutant's parts are every part that could
notice its change: the parts of the others cannot, and each mutant is judged on its own parts
only. Two mutants may even change the same file, when their changes are in different places
(``merge``: a three-way merge of line changes against the file's base, ``BASES``).
"""
from __future__ import annotations

import difflib
import textwrap
from dataclasses import dataclass, field

BASES: dict[str, str] = {}
"""The source each problem's mutants of a file are written against (file name -> source)."""


@dataclass(frozen=True)
class Mutant:
    """One submission of the table.

    name: unique in the table, "<problem>-<what it does>".
    files: file name -> whole source (dedented), replacing the reference's file.
    parts: the parts graded for it: every part whose checks run what it changed.
    lose: the rubric tests it must lose (score 0); every other test of its parts keeps full marks.
    words: rubric test id -> what its feedback must contain: each entry a string, or a tuple of
        strings of which one must appear.
    may_lose: rubric tests that may catch it or not, depending on the instances drawn (the
        course's data joins P6's pools only where it is here); their words are checked when they
        catch it.
    """

    name: str
    files: dict
    parts: tuple
    lose: frozenset = frozenset()
    words: dict = field(default_factory=dict)
    may_lose: frozenset = frozenset()


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def replace(source_text: str, old: str, new: str) -> str:
    """``source_text`` with its one occurrence of ``old`` replaced by ``new``."""
    assert source_text.count(old) == 1, old
    return source_text.replace(old, new)


def cases(problem: str, *, files_of, mutants: dict, right: dict, parts, names_the_mistake: dict,
          feedback: dict | None = None, may_lose: dict | None = None) -> list[Mutant]:
    """A problem's mutants and right-but-different submissions as table rows.

    files_of(value) -> {file: source}; mutants: name -> (value, rubric ids lost); right: name ->
    value; parts: the parts graded, or a function of the name giving them; names_the_mistake and
    feedback: name -> {test id: words} (one word string each, or a list)."""
    rows = []
    for name, (value, lose) in mutants.items():
        rows.append(Mutant(f"{problem}-{name}", files_of(value), _parts(parts, name), frozenset(lose),
                           _words(name, names_the_mistake, feedback), frozenset((may_lose or {}).get(name, ()))))
    for name, value in right.items():
        rows.append(Mutant(f"{problem}-{name}", files_of(value), _parts(parts, name),
                           words=_words(name, {}, feedback)))
    return rows


def _parts(parts, name: str) -> tuple:
    return tuple(parts(name) if callable(parts) else parts)


def _words(name: str, names_the_mistake: dict, feedback: dict | None) -> dict:
    words: dict[str, list] = {}
    for table in (names_the_mistake, feedback or {}):
        for test_id, entry in table.get(name, {}).items():
            words.setdefault(test_id, []).extend([entry] if isinstance(entry, (str, tuple)) else entry)
    return {test_id: tuple(entries) for test_id, entries in words.items()}


# -- sharing gradings ---------------------------------------------------------------------------
def _hunks(base: list[str], changed: list[str]) -> list[tuple[int, int, list[str]]]:
    """The line changes turning base into changed: (start, end, new lines) over base's lines."""
    matcher = difflib.SequenceMatcher(None, base, changed, autojunk=False)
    return [(i1, i2, changed[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def merge(file: str, sources: list[str]) -> str | None:
    """One source holding every change of ``sources`` (each a version of BASES[file]), or None
    when two of them change the same lines or lines next to each other (or file has no base)."""
    if len(sources) == 1:
        return sources[0]
    if file not in BASES:
        return None
    base = BASES[file].splitlines(keepends=True)
    hunks = sorted(h for text in sources for h in _hunks(base, text.splitlines(keepends=True)))
    for (_, end, _), (start, _, _) in zip(hunks, hunks[1:]):
        if start <= end:  # overlapping or touching: the changes could interact on one line
            return None
    out, position = [], 0
    for start, end, lines in hunks:
        out += base[position:start] + lines
        position = end
    return "".join(out + base[position:])


def combined_files(group: list[Mutant]) -> dict[str, str] | None:
    """The files of one submission holding every mutant of ``group`` (None: they collide)."""
    files: dict[str, list[str]] = {}
    for mutant in group:
        for name, text in mutant.files.items():
            files.setdefault(name, []).append(text)
    merged = {name: merge(name, texts) for name, texts in files.items()}
    return None if any(text is None for text in merged.values()) else merged


# Rough seconds each part's checks take per grading on the tiny model, to put the heavy mutants
# first (they anchor the groups the light ones join).
_COST = {"p6c": 4.0, "p5a": 4.0, "p5b": 4.0, "p4": 1.0, "p6d": 0.5, "p6e": 0.5, "p6f": 0.5, "p6h": 0.5}


def plan(table: list[Mutant]) -> dict[str, str]:
    """Mutant name -> the name of the grading it shares (first fit, heaviest first): mutants in
    one grading have disjoint parts and files that merge."""
    groups: list[list[Mutant]] = []
    for mutant in sorted(table, key=lambda m: (-sum(_COST.get(p, 0.1) for p in m.parts), m.name)):
        for group in groups:
            taken = {part for other in group for part in other.parts}
            if not taken & set(mutant.parts) and combined_files([*group, mutant]) is not None:
                group.append(mutant)
                break
        else:
            groups.append([mutant])
    return {mutant.name: f"grading-{index:02d}" for index, group in enumerate(groups) for mutant in group}
