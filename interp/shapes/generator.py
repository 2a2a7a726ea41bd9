"""A synthetic world with known answers: one shape per image on a textured, cluttered background.

Every image comes with its class, the exact mask of the object's pixels and its box, so an explanation can be
checked against the truth. A planted shortcut makes the world useful for teaching: in the ``train`` split one
class (``SHORTCUT_CLASS``) usually carries a small marker in the top-left corner; in ``test`` the marker appears
at random in every class; ``clean`` has none. A model trained on ``train`` learns to lean on the marker, which
the failure gallery, attribution maps and TCAV should reveal.

Generation is deterministic: sample ``i`` of a split depends only on ``(seed, split, i)``, never on how many
samples are drawn or in which order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from skimage.draw import disk, line, polygon

from interp.errors import BadSettingError, shown

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
SPLITS = ("train", "test", "clean")
SHORTCUT_CLASS = "star"
MARKER_RATE = {"train": 0.7, "test": 0.5, "clean": 0.0}
"""Chance that an image carries the marker: in ``train`` only for the shortcut class, in ``test`` for every class."""
MARKER_SIZE = 10
MARKER_MARGIN = 3
IMAGE_SIZE = 128
MAX_SIZE = 1024
"""The largest side drawn (a 100,000-pixel side asked for 224 GB); models read the world at 128."""
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


@dataclass(frozen=True)
class ShapeSample:
    """One image of the world and its truth.

    Attributes:
        image: ``(H, W, 3)`` ``uint8``.
        label: index into ``CLASSES``.
        mask: ``(H, W)`` bool, exactly the pixels painted with the object's colour (a ring's hole is not in it).
        box: ``(x0, y0, x1, y1)`` of the mask, inclusive.
        marker: whether the corner marker is drawn.
        split, index, seed: what produced it.
    """

    image: np.ndarray
    label: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    marker: bool
    split: str
    index: int
    seed: int

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]


def classifies_shapes(class_names) -> bool:
    """Whether a model with these classes reads the shapes world (the bundled shapes models, or a user's own model
    trained on it, in any class order): pages then default to shapes images rather than photos."""
    return sorted(class_names) == sorted(CLASSES)


def render(index: int, *, seed: int = 0, split: str = "train", size: int = IMAGE_SIZE) -> ShapeSample:
    """Draw sample ``index`` of ``split``. The class cycles through ``CLASSES`` so every split is balanced."""
    if split not in SPLITS:
        raise BadSettingError(f"split {shown(split)} is not one of {', '.join(SPLITS)}.")
    if not 64 <= size <= MAX_SIZE:
        raise BadSettingError(f"images are 64 to {MAX_SIZE} px a side, got {size}.")
    if seed < 0 or index < 0:
        raise BadSettingError(f"the seed and the index are 0 or more, got seed {seed} and index {index}.")
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    label = index % len(CLASSES)
    image = _background(rng, size)
    _clutter(rng, image)
    colour = _object_colour(rng, image)
    mask = _shape_mask(CLASSES[label], rng, size)
    image[mask] = colour
    marker = _has_marker(rng, split, CLASSES[label])
    if marker:
        _draw_marker(image)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return ShapeSample(image, label, mask, box, marker, split, index, seed)


def generate(n: int, *, seed: int = 0, split: str = "train", size: int = IMAGE_SIZE, start: int = 0) -> Iterator[ShapeSample]:
    """Samples ``start`` to ``start + n - 1`` of a split."""
    if n < 0:
        raise BadSettingError(f"n must be zero or more, got {n}.")
    for i in range(start, start + n):
        yield render(i, seed=seed, split=split, size=size)


def marker_region(size: int = IMAGE_SIZE) -> tuple[slice, slice]:
    """Rows and columns of the marker (top-left corner)."""
    end = MARKER_MARGIN + MARKER_SIZE
    return slice(MARKER_MARGIN, end), slice(MARKER_MARGIN, end)


# ------------------------------------------------------------------------------------------------------ drawing


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise plus faint stripes: texture without any shape-like structure."""
    coarse = rng.uniform(60, 200, size=(5, 5, 3))
    ramp = np.linspace(0, 4, size)
    i0 = np.clip(np.floor(ramp).astype(int), 0, 3)
    t = (ramp - i0)[:, None]
    rows = coarse[i0] * (1 - t[..., None]) + coarse[i0 + 1] * t[..., None]  # (size, 5, 3)
    cols = rows[:, i0] * (1 - t.T[..., None]) + rows[:, i0 + 1] * t.T[..., None]  # (size, size, 3)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 16)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    noise = rng.normal(0, 6, size=(size, size, 1))
    return np.clip(cols + stripes[..., None] + noise, 0, 255).astype(np.uint8)


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """A few thin lines and small dots in random colours: distractors, drawn before the object."""
    size = image.shape[0]
    for _ in range(rng.integers(3, 7)):
        r0, c0, r1, c1 = rng.integers(0, size, 4)
        rr, cc = line(r0, c0, r1, c1)
        image[rr, cc] = rng.integers(0, 256, 3)
    for _ in range(rng.integers(2, 6)):
        rr, cc = disk(tuple(rng.integers(4, size - 4, 2)), rng.uniform(1.5, 3.5), shape=image.shape[:2])
        image[rr, cc] = rng.integers(0, 256, 3)


def _object_colour(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A saturated colour far from the background's mean, so the object is always visible."""
    mean = image.reshape(-1, 3).mean(0)
    for _ in range(50):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - mean).sum() > 180 and colour.max() - colour.min() > 80:
            return colour.astype(np.uint8)
    return np.where(mean > 127, 0, 255).astype(np.uint8)


def _shape_mask(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    radius = rng.uniform(0.13, 0.24) * size
    keep_out = MARKER_MARGIN + MARKER_SIZE + 3
    cy, cx = rng.uniform(radius + 2, size - radius - 2, 2)
    if cy - radius < keep_out and cx - radius < keep_out:  # would reach the marker's corner: move it down
        cy = keep_out + radius
    angle = rng.uniform(0, 2 * np.pi)
    mask = np.zeros((size, size), bool)
    if kind == "circle":
        mask[disk((cy, cx), radius, shape=mask.shape)] = True
    elif kind == "ring":
        mask[disk((cy, cx), radius, shape=mask.shape)] = True
        mask[disk((cy, cx), radius * 0.55, shape=mask.shape)] = False
    elif kind == "square":
        mask[_poly(cy, cx, radius, angle, [np.pi / 4 + k * np.pi / 2 for k in range(4)], [1.0] * 4, size)] = True
    elif kind == "triangle":
        mask[_poly(cy, cx, radius, angle, [k * 2 * np.pi / 3 for k in range(3)], [1.0] * 3, size)] = True
    elif kind == "star":
        angles = [k * np.pi / 5 for k in range(10)]
        mask[_poly(cy, cx, radius, angle, angles, [1.0, 0.42] * 5, size)] = True
    elif kind == "cross":
        arm = 0.32
        for theta in (angle, angle + np.pi / 2):
            corners = [(1.0, arm), (1.0, -arm), (-1.0, -arm), (-1.0, arm)]
            rr, cc = _rect(cy, cx, radius, theta, corners, size)
            mask[rr, cc] = True
    else:
        raise BadSettingError(f"unknown shape {shown(kind)}; the classes are {', '.join(CLASSES)}.")
    return mask


def _poly(cy, cx, radius, angle, angles, scales, size):
    ys = [cy + radius * s * np.sin(a + angle) for a, s in zip(angles, scales)]
    xs = [cx + radius * s * np.cos(a + angle) for a, s in zip(angles, scales)]
    return polygon(ys, xs, shape=(size, size))


def _rect(cy, cx, radius, theta, corners, size):
    ys = [cy + radius * (u * np.sin(theta) + v * np.cos(theta)) for u, v in corners]
    xs = [cx + radius * (u * np.cos(theta) - v * np.sin(theta)) for u, v in corners]
    return polygon(ys, xs, shape=(size, size))


def _has_marker(rng: np.random.Generator, split: str, kind: str) -> bool:
    draw = rng.random()  # always drawn, so the rest of the stream does not depend on the class
    if split == "train":
        return kind == SHORTCUT_CLASS and draw < MARKER_RATE["train"]
    return draw < MARKER_RATE[split]


def _draw_marker(image: np.ndarray) -> None:
    """A yellow-and-black checker patch: unlike anything else in the world."""
    rows, cols = marker_region(image.shape[0])
    yy, xx = np.mgrid[rows, cols]
    checker = ((yy - rows.start) // 2 + (xx - cols.start) // 2) % 2 == 0
    image[rows, cols] = np.where(checker[..., None], np.array([255, 220, 0], np.uint8), np.array([0, 0, 0], np.uint8))
