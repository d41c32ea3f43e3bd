"""The texts P6 is graded on: the course's data files, and random-letter strings made here.

The course ships four files of 100-character strings: ``random.pkl``, ``shakespeare.pkl``,
``neurips.pkl`` (dicts {0..99: str}) and ``snippets.pkl`` (a list of 300 shuffled strings: the
Shakespeare and NeurIPS ones and 100 new random ones). The rubric's ``data:`` section, or the
folder in ``AUTOGRADER_DATA_DIR``, says where they are (see ``rubric.data_files``); without them
P6 grades on random-letter strings made from a seed, and p6e falls back to a weaker check.
"""
from __future__ import annotations

import pickle
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

DATASETS = ("random", "shakespeare", "neurips")  # the three kinds of text the course scores
LETTERS = string.ascii_letters  # the course's random strings use these 52 letters, uniformly


class DataError(ValueError):
    """A configured data file that cannot be read; the message names the file."""


def read_strings(path: Path) -> list[str]:
    """The strings of one data file, in order.

    ``.pkl``: a dict {index: str} (taken in index order) or a list of str, as the course ships
    them. These are the instructor's own files named in the rubric or AUTOGRADER_DATA_DIR, never
    anything from a submission, so reading them with pickle in the grader's process is acceptable.
    Any other suffix: a UTF-8 text file with one string per line (blank lines skipped).
    Raises DataError naming the file when it is missing or holds anything else.
    """
    path = Path(path)
    try:
        if path.suffix == ".pkl":
            with path.open("rb") as handle:
                data = pickle.load(handle)  # trusted instructor file, see the docstring
            items = [data[key] for key in sorted(data)] if isinstance(data, dict) else data
        else:
            items = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, pickle.UnpicklingError, EOFError, TypeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the course texts: {error}") from None
    if not isinstance(items, list) or not items or not all(type(item) is str for item in items):
        raise DataError(f"{path}: expected a non-empty dict or list of strings")
    return list(items)


@dataclass(frozen=True)
class CourseTexts:
    """The course's strings, each list empty when its file is not configured.

    random, shakespeare, neurips: the three scored datasets (100 strings each in the course).
    snippets: the classification set (300 strings in the course).
    """

    random: tuple[str, ...] = ()
    shakespeare: tuple[str, ...] = ()
    neurips: tuple[str, ...] = ()
    snippets: tuple[str, ...] = ()

    def dataset(self, name: str) -> tuple[str, ...]:
        return getattr(self, name)

    def labelled_snippets(self) -> list[tuple[str, bool]] | None:
        """(snippet, is_random) pairs, or None when they cannot be labelled: a snippet equal to a
        Shakespeare or NeurIPS string is English (False), every other one random letters (True).
        Needs the snippets and both English files."""
        if not (self.snippets and self.shakespeare and self.neurips):
            return None
        english = set(self.shakespeare) | set(self.neurips)
        return [(snippet, snippet not in english) for snippet in self.snippets]


def load_course_texts(files: Mapping[str, Path]) -> CourseTexts:
    """Read the configured files (names as in ``rubric.DATA_NAMES``); missing names stay empty."""
    return CourseTexts(**{name: tuple(read_strings(path)) for name, path in files.items()})


def random_letters(count: int, *, length: int | tuple[int, int], seed: int) -> list[str]:
    """``count`` strings of uniformly random ASCII letters, as the course's random.pkl holds.
    length: a fixed number of characters, or (low, high) for lengths drawn in [low, high].
    Deterministic in seed."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(LETTERS))
    sizes = [length] * count if isinstance(length, int) else rng.integers(length[0], length[1] + 1, size=count)
    return ["".join(rng.choice(letters, size=int(size))) for size in sizes]
