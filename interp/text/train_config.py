"""How the bundled text model is trained (:mod:`interp.text.train`): plain data, so that ``python -m interp
text-train --help`` prints the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextTrainConfig:
    layers: int = 2
    heads: int = 4
    hidden: int = 64
    intermediate: int = 128
    sentences: int = 24_000
    epochs: int = 6
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    test_seed: int = 12_345
    test_sentences: int = 2_000
    word_dropout: float = 0.15
    """Share of the words that are not planted (neither the keyword nor its "not") replaced by [MASK] in training,
    so that [MASK] means "no word here" to the model: Integrated Gradients' baseline."""
