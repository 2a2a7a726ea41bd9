"""Concept and random images made on the spot, so the concept lab works offline with nothing to download.

Textures (stripes, dots, checkerboard, a flat colour) at random scales, angles and colours; random images as
random crops of the bundled photos with random colour jitter; and the shapes world's own concepts (its corner
marker, striped objects, red objects). Everything is seeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from interp.errors import SEED_LIMIT, BadSettingError, at_least, name_list, seed_number, shown
from interp.images import LoadedImage, image_from_array

SIZE = 224
TEXTURES = ("stripes", "dots", "checkerboard", "flat colour")
SHAPES_CONCEPTS = ("marker", "striped", "red")


def texture(kind: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """``(size, size, 3)`` uint8 texture of ``kind``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == "stripes":
        theta, period = rng.uniform(0, np.pi), rng.uniform(8, 28)
        on = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0)[..., None]
    elif kind == "dots":
        period, radius = rng.uniform(14, 34), rng.uniform(0.18, 0.35)
        cy, cx = (yy % period) / period - 0.5, (xx % period) / period - 0.5
        on = (np.hypot(cy, cx) < radius)[..., None]
    elif kind == "checkerboard":
        period = rng.uniform(10, 32)
        on = (((xx // period) + (yy // period)) % 2 == 0)[..., None]
    elif kind == "flat colour":
        noise = rng.normal(0, 6, (size, size, 3))
        return np.clip(a + noise, 0, 255).astype(np.uint8)
    else:
        raise BadSettingError(f"texture {shown(kind)} is not one of {', '.join(TEXTURES)}.")
    return np.where(on, a, b).astype(np.uint8)


def _counts(n: object, seed: object) -> tuple[int, int]:
    """How many images and the seed, as whole numbers from 0 (1.5 failed in range(), -1 in NumPy's seeding)."""
    return at_least(n, 0, "the number of images"), seed_number(seed)


def texture_set(kind: str, n: int, seed: int = 0) -> list[LoadedImage]:
    n, seed = _counts(n, seed)
    rng = np.random.default_rng([seed, TEXTURES.index(kind) if kind in TEXTURES else 99])
    return [image_from_array(texture(kind, rng), name=f"{kind}_{i:03d}.png") for i in range(n)]


def random_images(n: int, seed: int = 0, size: int = SIZE) -> list[LoadedImage]:
    """Random crops of the bundled photos, randomly flipped and colour-jittered: a pool of 'anything' images."""
    from interp.samples import SAMPLES, load_sample

    n, seed = _counts(n, seed)
    photos = [load_sample(name).image for name in SAMPLES]
    rng = np.random.default_rng([seed, 7])
    out = []
    for i in range(n):
        im = photos[int(rng.integers(len(photos)))]
        w, h = im.size
        side = int(rng.uniform(0.3, 0.9) * min(w, h))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = np.asarray(im.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR), np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = crop * rng.uniform(0.7, 1.3, 3) + rng.uniform(-20, 20, 3)
        out.append(image_from_array(np.clip(crop, 0, 255).astype(np.uint8), name=f"random_{seed}_{i:03d}.png"))
    return out


def shapes_concept(kind: str, n: int, seed: int = 0) -> list[LoadedImage]:
    """The shapes world's concepts: ``marker`` (the corner marker on its backgrounds), ``striped`` (striped
    regions), ``red`` (red regions), all on the world's own textured backgrounds. A concept set varies everything
    but its concept: the regions take every shape of the world in turn (red discs alone were a "circle" concept too,
    and came out significant for "square" in 3 of 4 layers) and their size and place."""
    from interp.shapes.generator import CLASSES, IMAGE_SIZE, _background, _draw_marker, _shape_mask

    if kind not in SHAPES_CONCEPTS:
        raise BadSettingError(f"shapes concept {shown(kind)} is not one of {', '.join(SHAPES_CONCEPTS)}.")
    n, seed = _counts(n, seed)
    rng = np.random.default_rng([seed, 11, SHAPES_CONCEPTS.index(kind)])
    out = []
    for i in range(n):
        img = _background(rng, IMAGE_SIZE)
        if kind == "marker":
            _draw_marker(img)
        else:
            yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
            blob = _shape_mask(CLASSES[i % len(CLASSES)], rng, IMAGE_SIZE)
            if kind == "red":
                img[blob] = np.array([220, 20, 20]) + rng.integers(-15, 15, 3)
            else:
                stripes = (np.sin((xx + yy) * 2 * np.pi / rng.uniform(6, 12)) > 0)
                img[blob & stripes] = rng.integers(0, 256, 3)
                img[blob & ~stripes] = rng.integers(0, 256, 3)
        out.append(image_from_array(img.astype(np.uint8), name=f"{kind}_{i:03d}.png"))
    return out


def shapes_backgrounds(n: int, seed: int = 0) -> list[LoadedImage]:
    """The shapes world's backgrounds with clutter and no object and no marker: its random images."""
    from interp.shapes.generator import IMAGE_SIZE, _background, _clutter

    rng = np.random.default_rng([seed, 13])
    out = []
    for i in range(n):
        img = _background(rng, IMAGE_SIZE)
        _clutter(rng, img)
        out.append(image_from_array(img.astype(np.uint8), name=f"background_{seed}_{i:03d}.png"))
    return out


CONCEPTS = TEXTURES + SHAPES_CONCEPTS
RANDOM_SOURCES = ("photos", "shapes")


def folder_name(kind: str) -> str:
    """A concept's folder: its name with a hyphen for a space (``flat-colour``), which the CLI also accepts back."""
    return kind.replace(" ", "-")


def concept_set(kind: str, n: int, seed: int = 0) -> list[LoadedImage]:
    """``n`` images of any of :data:`CONCEPTS` (a texture or a shapes-world concept; ``flat-colour`` as well)."""
    kind = kind.replace("-", " ") if isinstance(kind, str) else kind
    if kind in SHAPES_CONCEPTS:
        return shapes_concept(kind, n, seed)
    if kind not in TEXTURES:
        named = folder_name(kind) if isinstance(kind, str) else kind
        raise BadSettingError(f"concept {shown(named)} is not one of {', '.join(map(folder_name, CONCEPTS))}.")
    return texture_set(kind, n, seed)


def random_set_seed(seed: int, k: int) -> int:
    """The seed of random set ``k`` drawn from ``seed``, the Concepts page's and :func:`write_folders`' alike:
    ``seed * 1000 + k``, kept below :data:`~interp.errors.SEED_LIMIT`."""
    return (seed_number(seed) * 1000 + k) % SEED_LIMIT


def write_folders(out: Path, concepts: Sequence[str], *, n: int = 30, random_sets: int = 11,
                  random_source: str = "photos", seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write each concept's images to ``out/<concept>/`` and ``random_sets`` random sets to ``out/random/set_<k>/``
    as PNGs, the sets the Concepts page makes from the same seed (random set ``k`` seeded ``seed * 1000 + k``), so
    ``tcav --concept out/<concept> --random out/random`` runs on them. A folder that already holds files this would
    not write is refused before anything is written (they would join the set). Returns each folder by its set's name.

    Args:
        random_source: ``photos`` (crops of the bundled photos) or ``shapes`` (the shapes world's backgrounds).
        progress: ``progress(done, total)`` after each folder.
    """
    n, seed = at_least(n, 2, "the number of images per set"), seed_number(seed)
    random_sets = at_least(random_sets, 2, "the number of random sets")
    if random_source not in RANDOM_SOURCES:
        raise BadSettingError(f"random source {shown(random_source)} is not one of {', '.join(RANDOM_SOURCES)}.")
    make_random = shapes_backgrounds if random_source == "shapes" else random_images
    random_dir = Path(out) / "random"
    plan: dict[str, tuple[Path, Callable[[], list[LoadedImage]]]] = {}
    for kind in dict.fromkeys(folder_name(k.replace("-", " ")) for k in name_list(concepts, "concepts")):
        concept_set(kind, 0)  # an unknown name is refused before anything is written
        plan[kind] = (Path(out) / kind, lambda kind=kind: concept_set(kind, n, seed))
    for k in range(random_sets):
        plan[f"random/set_{k:02d}"] = (random_dir / f"set_{k:02d}",
                                       lambda k=k: make_random(n, seed=random_set_seed(seed, k)))  # fmt: skip
    drawn: dict[Path, list[LoadedImage]] = {}  # sets drawn to compare with a folder's files, written as they are
    for folder, make in [*plan.values(), (random_dir, None)]:
        if folder.exists() and not folder.is_dir():
            raise BadSettingError(f"{folder} is a file, where a folder of images goes: name another folder.")
        held = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if held:  # a rerun with the same settings writes the same files; anything else would join the set
            if make is None:
                written = {f.name for f, _ in plan.values() if f.parent == random_dir}
            else:
                written = {folder_name(im.name) for im in drawn.setdefault(folder, make())}
            others = sorted(held - written)
            if others:
                raise BadSettingError(f"{folder} already holds files this would not write ({', '.join(others[:3])}), "
                                      "which would join the set: name another folder, or empty this one.")  # fmt: skip
    for done, (folder, make) in enumerate(plan.values(), start=1):
        folder.mkdir(parents=True, exist_ok=True)
        for im in drawn.pop(folder, None) or make():
            im.image.save(folder / folder_name(im.name))
        if progress is not None:
            progress(done, len(plan))
    return {name: folder for name, (folder, _) in plan.items()}

