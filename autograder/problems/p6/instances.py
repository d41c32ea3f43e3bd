"""The instances P6's checks use: texts to score, prompts to sample from, temperatures.

Every instance is fixed by the model's sizes and the configured course data: public ones are
the same for everybody; a submission's seeded instances are drawn from pools (the run's seed
picks which), so the reference cache, built once, covers them all. Sources are strings (the
course's, English written here, random letters from fixed seeds) or random token-id sequences;
they are tokenized when the reference cache is built (autograder/problems/p6/reference.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import CourseTexts, random_letters

POOL_SEED = 236  # seeds every generated instance: pools are the same in every run
PUBLIC_TEMPERATURES = (0.7, 1.5)
LOW_TEMPERATURES = (0.5, 0.6, 0.7)  # seeded draws take one below 1 and one above, far enough
HIGH_TEMPERATURES = (1.5, 1.75, 2.0)  # from 1 that a sampler ignoring T is caught (see test_p6_sampling)
TEMPERATURES = tuple(sorted(set(PUBLIC_TEMPERATURES + LOW_TEMPERATURES + HIGH_TEMPERATURES)))
HORIZONS = (1, 2)
COURSE_POOL = 24  # strings of each course dataset scored by the reference (seeded draws pick among them)
# Public English, written for the grader (Dickens, public domain), not taken from course data.
ENGLISH = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
           "of foolishness, it was the epoch of belief, it was the epoch of incredulity.")


@dataclass(frozen=True)
class Source:
    """One instance before tokenization.

    id: unique among instances of its use, stable across runs (cache entries are found by it).
    kind: "random" (letters), "english", "shakespeare", "neurips", "course" (a prefix of a
        Shakespeare or NeurIPS string) or "tokens" (random token ids).
    public: a fixed public instance (True) or a pool member for seeded draws.
    text: the string to tokenize, or None for a token-id sequence.
    tokens: the ids of a token-id sequence, else None.
    max_tokens: keep at most this many tokens after tokenizing (None: up to the context).
    label: for classification snippets, whether the text is random letters.
    """

    id: str
    kind: str
    public: bool
    text: str | None = None
    tokens: tuple[int, ...] | None = None
    max_tokens: int | None = None
    label: bool | None = None


def likelihood_sources(texts: CourseTexts, *, vocab_size: int, context: int) -> list[Source]:
    """Texts for log_likelihood: from 2 tokens to the whole context.

    Public: two and three tokens, a 100-letter random string, an English sentence, and random
    token ids filling the context. Pool: random letters of 3..400 characters, token-id sequences
    of 2..context tokens, long texts cut at the context, and COURSE_POOL strings of each course
    dataset configured (a fixed choice) and a passage of each.
    (Texts that tokenize to fewer than 2 tokens are dropped when the cache is built.)
    """
    rng = np.random.default_rng(POOL_SEED)
    letters = random_letters(16, length=(3, 400), seed=POOL_SEED + 1)
    long_letters = random_letters(2, length=6 * context, seed=POOL_SEED + 2)
    lengths = [2, 3, context // 2, context - 1, context] + rng.integers(4, context, size=3).tolist()
    hundred = random_letters(1, length=100, seed=POOL_SEED + 3)[0]
    sources = [
        Source("ll-two-tokens", "random", True, text=hundred, max_tokens=2),
        Source("ll-three-tokens", "english", True, text=ENGLISH, max_tokens=3),
        Source("ll-random-letters", "random", True, text=hundred),
        Source("ll-english", "english", True, text=ENGLISH),
        Source("ll-full-context", "tokens", True, tokens=tuple(rng.integers(0, vocab_size, size=context).tolist())),
    ]
    sources += [Source(f"ll-letters-{i}", "random", False, text=text) for i, text in enumerate(letters)]
    sources += [Source(f"ll-long-letters-{i}", "random", False, text=text) for i, text in enumerate(long_letters)]
    sources += [Source(f"ll-tokens-{i}", "tokens", False, tokens=tuple(rng.integers(0, vocab_size, size=n).tolist()))
                for i, n in enumerate(lengths)]
    for name in ("random", "shakespeare", "neurips"):
        strings = texts.dataset(name)
        # COURSE_POOL of each dataset's strings (fixed by the pool seed): variety enough for seeded
        # draws, and a cache that builds in minutes with GPT-2 small on a CPU.
        chosen = sorted(rng.choice(len(strings), size=min(COURSE_POOL, len(strings)), replace=False)) if strings else []
        sources += [Source(f"ll-{name}-{i}", name, False, text=strings[i]) for i in chosen]
        if strings and name != "random":  # a long passage: the strings run on, cut at the context
            sources.append(Source(f"ll-{name}-passage", name, False, text="".join(strings)))
    return sources


def prompt_sources(texts: CourseTexts) -> list[Source]:
    """Prompts for sampling and temperature scaling, 1 to ~20 tokens.

    Public: random letters, an English phrase, a single token. Pool: random letters of 1..24
    characters, prefixes of the English sentence, and prefixes of course strings if configured.
    """
    rng = np.random.default_rng(POOL_SEED + 4)
    sources = [
        Source("prompt-letters", "random", True, text=random_letters(1, length=12, seed=POOL_SEED + 5)[0]),
        Source("prompt-english", "english", True, text=ENGLISH[:40]),
        Source("prompt-one-token", "english", True, text=ENGLISH, max_tokens=1),
    ]
    sources += [Source(f"prompt-letters-{i}", "random", False, text=text)
                for i, text in enumerate(random_letters(6, length=(1, 24), seed=POOL_SEED + 6))]
    course = [text for name in ("shakespeare", "neurips") for text in texts.dataset(name)]
    if course:
        picks = rng.choice(len(course), size=4, replace=False)
        sources += [Source(f"prompt-course-{i}", "course", False, text=course[j][: int(rng.integers(10, 60))])
                    for i, j in enumerate(picks)]
    else:
        sources += [Source(f"prompt-english-{i}", "english", False, text=ENGLISH[int(start):int(start) + 30])
                    for i, start in enumerate(rng.integers(0, len(ENGLISH) - 30, size=4))]
    return sources


def snippet_sources(texts: CourseTexts) -> list[Source]:
    """The course's classification snippets with their labels (empty when not labelled)."""
    labelled = texts.labelled_snippets() or []
    return [Source(f"snippet-{i}", "random" if label else "english", False, text=text, label=label)
            for i, (text, label) in enumerate(labelled)]
