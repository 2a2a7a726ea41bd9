"""Localisation scores where the right answer is known (an object mask: the shapes world's masks, Open Images'
boxes): does the map point at the object, and how much of its mass falls on it.

- pointing game (Zhang et al. 2016): a hit when the map's maximum lies on the object (optionally within a tolerance);
- energy inside the object (Wang et al. 2020, Score-CAM's "energy-based pointing game"): the share of the map's
  positive mass that falls on the object; a map spread evenly scores the object's share of the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from interp.errors import BadSettingError, as_array, real_number, shown, whole_number
from interp.shapes.truth import pointing_hit

if TYPE_CHECKING:
    from interp.datasets import Dataset, Item

NOT_FINITE = ("the map holds NaN or infinite values (the method failed numerically), so it ranks no pixels and "
              "cannot be scored.")


def as_values(saliency: np.ndarray) -> np.ndarray:
    """A ``(H, W)`` map of importance. A map whose colour channels differ (gradients, IG) counts each pixel by its
    largest absolute value over them, the usual rule for the pointing game on gradient maps, whose channels' signs
    mean little on their own. A map with one value per pixel, given as ``(H, W)``, ``(1, H, W)`` or the same value
    in every channel (occlusion, LIME, KernelSHAP, RISE), is read as it is: its negative values say a region lowers
    the score, which is not evidence for the class."""
    values = as_array(saliency, np.float64)
    if not np.isfinite(values).all():
        raise BadSettingError(NOT_FINITE)
    if values.ndim == 3 and (values == values[:1]).all():
        return values[0]
    return np.abs(values).max(axis=0) if values.ndim == 3 else values


def as_mask(mask: np.ndarray) -> np.ndarray:
    """``mask`` as ``(H, W)`` bool: a bool array as it is, 0/1 numbers as False/True; anything else (a soft mask of
    probabilities, 0-255 grey levels) is refused rather than guessed at."""
    mask = as_array(mask)
    if mask.dtype == np.bool_:
        return mask
    if mask.size and not np.isin(mask, (0, 1)).all():
        raise BadSettingError(f"a mask is True/False (or 0/1) per pixel; this one holds values from {mask.min():.4g} "
                              f"to {mask.max():.4g} (threshold it first, e.g. mask > 0.5).")  # fmt: skip
    return mask.astype(bool)


def energy_inside(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive mass on ``mask`` (``(H, W)`` bool), 0 to 1; a map with no positive mass gives 0."""
    values, mask = as_values(saliency), as_mask(mask)
    if values.shape != mask.shape:
        raise BadSettingError(f"map {values.shape} and mask {mask.shape} differ in size.")
    positive = np.clip(values, 0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def pointing(saliency: np.ndarray, mask: np.ndarray, tolerance_px: int = 0) -> bool:
    """The pointing game: whether the map's maximum lies on ``mask`` (grown by ``tolerance_px``)."""
    return pointing_hit(as_values(saliency), as_mask(mask), tolerance_px)


def centre_hit(mask: np.ndarray, tolerance_px: int = 0) -> bool:
    """The baseline every map must beat: a "map" that always points at the image's centre."""
    centre = np.zeros(mask.shape)
    centre[mask.shape[0] // 2, mask.shape[1] // 2] = 1.0
    return pointing_hit(centre, mask, tolerance_px)


def object_mask(dataset: Dataset, item: Item, size: tuple[int, int]) -> np.ndarray | None:
    """Where the object is in ``item`` of ``dataset``, as an ``(H, W)`` bool mask at the image's ``size`` (width,
    height), where the dataset knows: a shapes-world folder's exact mask (its ``labels.csv``), else the union of the
    item's boxes (Open Images); ``None`` otherwise."""
    from interp.shapes.truth import truth_mask

    mask = truth_mask(dataset.root, item.path)
    if mask is None and item.boxes:
        mask = boxes_mask(item.boxes, size[1], size[0])
    if mask is None or mask.shape != (size[1], size[0]):  # a mask of another size than the file: not this image's
        return None
    return mask


def boxes_mask(boxes, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask of boxes given as ``(label, x0, y0, x1, y1)`` with fractions of the width and height (an
    Open Images ``Item.boxes``), in the image's own pixels."""
    h, w = whole_number(height), whole_number(width)
    if h is None or w is None or h < 1 or w < 1:
        raise BadSettingError(f"the mask's height and width are whole numbers of pixels; got {shown(height)}, "
                              f"{shown(width)}.")  # fmt: skip
    boxes = [boxes] if isinstance(boxes, tuple) and len(boxes) == 5 and isinstance(boxes[0], str) else boxes
    rows = list(boxes) if isinstance(boxes, (list, tuple)) else None
    if rows is None or not all(isinstance(b, (list, tuple)) and len(b) == 5
                               and all(real_number(v) is not None for v in b[1:]) for b in rows):  # fmt: skip
        raise BadSettingError("boxes are (label, x0, y0, x1, y1) with fractions of the width and height, as an "
                              f"Open Images item's boxes; got {shown(boxes)}.")  # fmt: skip
    height, width = h, w
    mask = np.zeros((height, width), dtype=bool)
    for _, x0, y0, x1, y1 in rows:
        c0, c1 = int(np.floor(x0 * width)), int(np.ceil(x1 * width))
        r0, r1 = int(np.floor(y0 * height)), int(np.ceil(y1 * height))
        mask[max(r0, 0) : min(r1, height), max(c0, 0) : min(c1, width)] = True
    return mask
