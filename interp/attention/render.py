"""Attention maps drawn over the image the model saw. Pure numpy and PIL."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from interp.attribution.display import DisplaySettings, overlay


def draw(base: np.ndarray, grid_map: np.ndarray, alpha: float = 0.55, colormap: str = "inferno") -> np.ndarray:
    """``(H, W, 3)`` ``uint8``: a ``(rows, cols)`` map scaled to its own maximum, resized and laid over ``base``."""
    return overlay(base, grid_map[None].astype(np.float32), DisplaySettings(alpha=alpha, colormap=colormap, clip_percentile=100.0))


def mark_patch(image: np.ndarray, grid: tuple[int, int], row: int, col: int, colour: str = "#00e5ff") -> np.ndarray:
    """A copy of ``image`` with patch ``(row, col)`` of a ``grid`` outlined."""
    h, w = image.shape[:2]
    ph, pw = h / grid[0], w / grid[1]
    out = Image.fromarray(image)
    ImageDraw.Draw(out).rectangle(
        [col * pw, row * ph, (col + 1) * pw - 1, (row + 1) * ph - 1], outline=colour, width=max(1, round(min(h, w) / 112))
    )
    return np.asarray(out)
