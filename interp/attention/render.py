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


def heads_grid(maps: np.ndarray, base: np.ndarray) -> tuple[list[str], list[str], list[list[np.ndarray]]]:
    """What the class token reads from each patch (``maps``: :func:`interp.attention.maps.cls_maps`'s ``(layers,
    heads, rows, cols)``), for every head of every layer and each layer's head mean, drawn over ``base``: the rows
    (``layer 0`` …), columns (``head 0`` …, ``mean``) and cells of a labelled grid
    (:func:`interp.attribution.display.grid_png`), as the Attention page and ``python -m interp attention`` show it."""
    layers, heads = maps.shape[:2]
    means = maps.mean(axis=1)
    cells = [[draw(base, maps[l, h]) for h in range(heads)] + [draw(base, means[l])] for l in range(layers)]
    return [f"layer {l}" for l in range(layers)], [f"head {h}" for h in range(heads)] + ["mean"], cells
