"""The choices a deletion/insertion score takes, as plain data: ``python -m interp evaluate --help`` lists them
without loading torch (:mod:`interp.evaluation.faithfulness` explains each)."""

from __future__ import annotations

from typing import Literal

Replacement = Literal["blur", "mean", "black", "noisy_linear"]
REPLACEMENTS: tuple[str, ...] = ("blur", "mean", "black", "noisy_linear")
BLOCKS: tuple[int, ...] = (1, 4, 8, 16, 32)  # the region sides the page offers, in input pixels
Score = Literal["probability", "logit"]
