"""Ground truth of the shapes world for explanations: the object's mask in the model's view, its outline, and the
pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016): a map scores a hit when
its maximum falls on the object."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation
from skimage.morphology import disk
from skimage.segmentation import find_boundaries

from interp.errors import BadSettingError
from interp.shapes.generator import render


@functools.lru_cache(maxsize=8)
def _labels(csv_path: str, mtime: float) -> dict[str, dict[str, str]]:
    with open(csv_path, newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def truth_mask(root: Path, relpath: str) -> np.ndarray | None:
    """``(H, W)`` bool object mask of a shapes-world image written by ``shapes generate`` (``None`` if ``relpath`` is
    not in the folder's ``labels.csv``). The image is drawn again from its seed, split and index: exact, no file."""
    path = Path(root) / "labels.csv"
    if not path.is_file():
        return None
    try:
        row = _labels(str(path), path.stat().st_mtime).get(relpath)
        if row is None:
            return None
        return render(int(row["index"]), seed=int(row["seed"]), split=row["split"]).mask
    except (KeyError, ValueError, TypeError):  # a labels.csv of another kind (a user's own columns): no known truth
        return None


def mask_in_view(mask: np.ndarray, view) -> np.ndarray:
    """The mask resized and cropped exactly as the model's preprocessing treats the image.

    Args:
        view: ``LoadedModel.view`` (PIL image → the model's view as ``(h, w, 3)`` ``uint8``).
    """
    seen = view(Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB"))
    return seen[..., 0] > 127


def pointing_hit(values: np.ndarray, mask: np.ndarray, tolerance_px: int = 0) -> bool:
    """Whether the maximum of ``values`` ``(H, W)`` lies on ``mask`` (grown by ``tolerance_px``)."""
    if values.shape != mask.shape:
        raise BadSettingError(f"map {values.shape} and mask {mask.shape} differ in size.")
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    grown = binary_dilation(mask, structure=disk(tolerance_px)) if tolerance_px > 0 else mask
    return bool(grown[y, x])


def draw_outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of ``image`` ``(H, W, 3)`` with the boundary of ``mask`` (resized to it if needed) drawn in ``colour``."""
    if mask.shape != image.shape[:2]:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.shape[1::-1], Image.Resampling.NEAREST)) > 127
    out = image.copy()
    out[find_boundaries(mask, mode="outer")] = colour
    return out
