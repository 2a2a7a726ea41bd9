"""A small text world whose answers are known: short reviews whose label is planted in two tokens.

Each sentence is filler words with exactly one sentiment keyword. When the word just before the keyword is "not",
the keyword's sentiment flips; a distracting "not" elsewhere in the sentence changes nothing. So a model must find
the keyword and read the token right before it: the structure we expect its heads to show (a head that attends to
the previous token, and the class token attending to the keyword). Generation is deterministic: sentence ``i``
depends only on ``(seed, i)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CLASSES = ("negative", "positive")
POSITIVE = ("good", "great", "fun", "superb", "lovely", "brilliant")
NEGATIVE = ("bad", "dull", "awful", "boring", "weak", "poor")
NEGATION = "not"
FILLER = (
    "the", "a", "movie", "film", "plot", "actor", "story", "was", "is", "really", "quite", "very", "and", "but",
    "it", "this", "that", "ending", "music", "scene", "i", "found", "thought", "felt", "overall", "cast", "script",
    "of", "with", "so", "too", "my", "friend", "said", "seemed", "at", "times", "somewhat",
)  # fmt: skip
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB: tuple[str, ...] = (*SPECIALS, NEGATION, *POSITIVE, *NEGATIVE, *FILLER)
MIN_WORDS, MAX_WORDS = 5, 14
NEGATED_RATE = 0.3
DISTRACTOR_RATE = 0.6


@dataclass(frozen=True)
class Review:
    """One sentence and its truth.

    Attributes:
        text: the words, space-separated.
        label: index into :data:`CLASSES`.
        keyword: the position of the sentiment keyword among the words (0-based, without [CLS]).
        negated: whether "not" stands right before the keyword.
        distractor: the position of a "not" that does not touch the keyword, or ``None``.
    """

    text: str
    label: int
    keyword: int
    negated: bool
    distractor: int | None

    @property
    def words(self) -> list[str]:
        return self.text.split()


def review(index: int, seed: int = 0) -> Review:
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
    words = [str(w) for w in rng.choice(FILLER, size=n)]
    positive = bool(index % 2)  # balanced keywords
    keyword = str(rng.choice(POSITIVE if positive else NEGATIVE))
    negated = bool(rng.random() < NEGATED_RATE)
    at = int(rng.integers(1 if negated else 0, n + 1))
    words.insert(at, keyword)
    if negated:
        words.insert(at, NEGATION)
        at += 1
    distractor = None
    if rng.random() < DISTRACTOR_RATE:
        # anywhere but just before the keyword (which would negate it) or just after it
        spots = [p for p in range(len(words) + 1) if p not in (at, at + 1) and not (negated and p == at - 1)]
        spot = int(rng.choice(spots))
        words.insert(spot, NEGATION)
        if spot <= at:
            at += 1
        distractor = spot
    label = int(positive != negated)
    return Review(" ".join(words), label, at, negated, distractor)


def reviews(n: int, seed: int = 0, start: int = 0) -> Iterator[Review]:
    for i in range(start, start + n):
        yield review(i, seed)
