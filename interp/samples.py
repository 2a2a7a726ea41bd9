"""Photos that ship inside scikit-image and images of the shapes world, all with no network: the offline samples."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from interp.errors import BadSettingError, shown
from interp.images import LoadedImage, image_from_array


@dataclass(frozen=True)
class Sample:
    """A bundled photo: its key, a caption, and the scikit-image loader that returns its pixels."""

    name: str
    caption: str
    loader: str  # attribute of skimage.data

    def pixels(self) -> np.ndarray:
        from skimage import data

        arr = getattr(data, self.loader)()
        return arr[0] if isinstance(arr, tuple) else arr  # stereo_motorcycle returns (left, right, disparity)


@dataclass(frozen=True)
class ShapesSample:
    """An image of the shapes world (:mod:`interp.shapes`), drawn on demand: its key, a caption, and which sample of
    which split and seed it is (sample ``i`` depends only on those)."""

    name: str
    caption: str
    index: int
    split: str = "test"
    seed: int = 1000

    def pixels(self) -> np.ndarray:
        from interp.shapes import generator

        return generator.render(self.index, split=self.split, seed=self.seed).image


SAMPLES: dict[str, Sample | ShapesSample] = {
    s.name: s
    for s in (
        Sample("chelsea", "Chelsea the cat", "chelsea"),
        Sample("coffee", "a cup of coffee", "coffee"),
        Sample("rocket", "a rocket on its launch pad", "rocket"),
        Sample("astronaut", "astronaut Eileen Collins", "astronaut"),
        Sample("motorcycle", "a motorcycle (left view of a stereo pair)", "stereo_motorcycle"),
        Sample("camera", "a cameraman with a tripod (grey)", "camera"),
        Sample("clock", "a wall clock (grey)", "clock"),
        Sample("horse", "a horse silhouette (binary)", "horse"),
        Sample("coins", "Greek coins (grey)", "coins"),
        Sample("hubble", "Hubble deep field", "hubble_deep_field"),
        Sample("moon", "the surface of the moon (grey)", "moon"),
        Sample("retina", "a human retina", "retina"),
        Sample("brick", "a brick wall texture (grey)", "brick"),
        Sample("colorwheel", "a colour wheel", "colorwheel"),
        ShapesSample("shapes_star", "a star from the shapes world (the bundled shapes models know it)", 3),
        ShapesSample("shapes_marked", "a triangle wearing the shapes world's star marker: shapes_vit calls it a star", 2),
    )
}

DEFAULT_SAMPLE = "chelsea"


def sample_names() -> tuple[str, ...]:
    return tuple(SAMPLES)


@functools.lru_cache(maxsize=len(SAMPLES))
def load_sample(name: str) -> LoadedImage:
    """A bundled photo as a :class:`LoadedImage` (RGB, grey photos expanded), cached after the first call."""
    if name not in SAMPLES:
        raise BadSettingError(f"{shown(name)} is not a bundled sample; choose one of {', '.join(SAMPLES)}.")
    return image_from_array(SAMPLES[name].pixels(), name)
